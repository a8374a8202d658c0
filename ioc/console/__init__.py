"""The incident console: staff accounts and sessions (`accounts`), and the server-rendered pages
`ioc api` serves under `/console` (`web`, Jinja2 templates, htmx served from the package)."""
