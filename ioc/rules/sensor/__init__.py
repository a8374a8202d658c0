"""Sensor rules: one plugin file per rule (`plugins/`), composed into the rules file's model and
the per-sensor rules (`registry`), and applied reading by reading and tick by tick (`engine`).
This package imports nothing, so that a plugin folder can be extended before the registry
looks."""
