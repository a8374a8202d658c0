"""The camera rules, one file each. Each file defines one `ioc.rules.camera.base.CameraRule`
subclass; `ioc.rules.camera.registry` discovers them. A new rule is a file here, its block in
`camera_rules.toml` and its incident kind (`ioc.models.kinds`)."""
