"""Faust agents: validate, apply each flow's rules, store, and raise incidents."""
