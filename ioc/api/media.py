"""Photos citizens send with an Open311 POST (`media`), served to staff only.

The intake stores each photo in `ticket_media` before publishing the ticket, whose public
`media_url` points here: a reporter's photo may show faces, plates and homes, so reading it takes
a staff key (`alerts.staff_keys`, as for the incidents API), and every read is logged by name.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ioc.api.context import ApiError, database, runtime_of
from ioc.api.incidents import staff_of
from ioc.api.open311 import field_label

log = logging.getLogger(__name__)

router = APIRouter()

PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")


@router.get(
    "/requests/{service_request_id}/media",
    response_class=Response,
    responses={
        200: {"content": {media_type: {} for media_type in PHOTO_TYPES}},
        401: {},
        404: {},
        503: {},
    },
)
async def get_media(service_request_id: str, request: Request) -> Response:
    """The photo sent with the request (staff only: `X-API-Key` or `Authorization: Bearer`)."""
    staff = staff_of(request)
    async with database(runtime_of(request)) as conn:
        cursor = await conn.execute(
            "SELECT media_type, content FROM ticket_media WHERE service_request_id = %s",
            (service_request_id,),
        )
        row = await cursor.fetchone()
    if row is None:
        raise ApiError(404, f"service_request_id {field_label(service_request_id)}: no photo")
    log.info("photo of ticket %s read by %s", service_request_id, staff)
    return Response(
        bytes(row["content"]),
        media_type=row["media_type"],
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )
