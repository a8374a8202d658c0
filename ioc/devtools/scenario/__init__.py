"""The bounded end-to-end scenario: plan, publisher, worker supervision and the summary."""
