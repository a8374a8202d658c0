"""The sensor rules, one file each. Each file defines one `ioc.rules.sensor.base.SensorRule`
subclass; `ioc.rules.sensor.registry` discovers them. A new rule is a file here, its block in
`sensor_rules.toml` and, if it raises a new kind of incident, that kind (`ioc.models.kinds`)."""
