"""The Kafka plumbing every worker shares: clients built from the settings (`clients`), the typed
topic contracts (`topics`), the dead-letter format (`dlq`) and consumer lag (`lag`)."""
