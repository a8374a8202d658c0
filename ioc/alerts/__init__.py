"""Delivery of new incidents to hotline staff (console, webhook; Alertmanager in a later issue)."""
