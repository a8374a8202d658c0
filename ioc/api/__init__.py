"""The HTTP edge: Open311 GeoReport v2 intake and read-back for the 1022 hotline."""

from ioc.api.app import create_app

__all__ = ["create_app"]
