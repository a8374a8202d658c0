"""The OpenAPI document of the Open311 routes, committed for integrators as
`docs/open311-openapi.json` (a test fails when it is stale).

Regenerate after changing those routes: `python -m ioc.api.openapi > docs/open311-openapi.json`.
Only the Open311 routes: the sensor and incidents APIs change on their own schedule.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from ioc.api import media
from ioc.api.requests import PREFIX, TITLE, router

DESCRIPTION = (
    "Open311 GeoReport v2 (http://wiki.open311.org/GeoReport_v2) for the 1022 hotline: every "
    "endpoint answers JSON or XML by its `.json`/`.xml` suffix. Extensions: `priority` and "
    "`incident_id` on requests, `page`/`page_size`, the optional `channel` field, a photo as a "
    "multipart `media` file, and the staff-only status, triage and media routes."
)


def open311_openapi() -> dict[str, Any]:
    document = FastAPI(title=TITLE, description=DESCRIPTION)
    document.include_router(router, prefix=PREFIX)
    document.include_router(media.router, prefix=PREFIX)
    return document.openapi()


def render() -> str:
    return json.dumps(open311_openapi(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
