"""ioc: cameras, 1022 hotline tickets and IoT sensors in; incidents and alerts out."""

__version__ = "0.1.0"
