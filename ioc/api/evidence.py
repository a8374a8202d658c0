"""A camera incident's snapshot and clip, served to staff only.

They show faces, plates and homes, so reading them takes a staff key (as for the incidents API)
and every read is logged by name. The files are those the evidence writer recorded; a path that
lies outside `vision.evidence_dir` is refused, so a row changed by hand cannot serve any file of
the server. An incident of several cameras serves its best-scoring snapshot's camera unless the
request names the candidate (`member`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from ioc.api.context import ApiError, Runtime, database, runtime_of
from ioc.api.incidents import staff_of
from ioc.incidents import lifecycle
from ioc.incidents.lifecycle import EvidenceFiles

log = logging.getLogger(__name__)

router = APIRouter()

MEDIA_TYPES = {"snapshot": "image/jpeg", "clip": "video/mp4"}
CLIP_RETRY_AFTER_S = 10


@router.get(
    "/{incident_id}/{kind}",
    response_class=FileResponse,
    responses={
        200: {"content": {media_type: {} for media_type in MEDIA_TYPES.values()}},
        401: {},
        404: {},
        503: {},
    },
)
async def get_evidence(
    incident_id: str,
    kind: Literal["snapshot", "clip"],
    request: Request,
    member: Annotated[str | None, Query(max_length=200)] = None,
) -> FileResponse:
    """The annotated best frame (`snapshot`, JPEG) or the clip (`clip`, H.264 MP4, byte ranges
    served) of the incident's camera; `member` picks one camera candidate of several."""
    return await evidence_file(runtime_of(request), staff_of(request), incident_id, kind, member)


async def evidence_file(
    runtime: Runtime,
    staff: str,
    incident_id: str,
    kind: Literal["snapshot", "clip"],
    member: str | None,
) -> FileResponse:
    """The file, for a member of staff already known (by key here, by session in the console);
    the read is logged with their name."""
    async with database(runtime) as conn:
        try:
            incident = await lifecycle.get(conn, incident_id)
        except lifecycle.UnknownIncident as error:
            raise ApiError(404, f"incident_id: {error}") from None
        files = await lifecycle.evidence_files(conn, incident)
    entry = chosen(files, member)
    if kind == "clip" and entry.clip_status == "pending":
        raise ApiError(
            404,
            f"clip: still being built (it ends {runtime.settings.vision.clip_after_s:g} s after "
            "the incident's first frame); try again shortly",
            headers={"Retry-After": str(CLIP_RETRY_AFTER_S)},
        )
    path = entry.snapshot if kind == "snapshot" else entry.clip
    if path is None:
        status = "" if kind == "snapshot" else f" ({entry.clip_status})"
        raise ApiError(404, f"{kind}: none for camera {entry.camera_id}{status}")
    served = Path(path).resolve()
    if not served.is_relative_to(runtime.settings.vision.evidence_dir.expanduser().resolve()):
        log.error("incident %s: %s %s is outside the evidence directory", incident_id, kind, path)
        raise ApiError(404, f"{kind}: not in the evidence directory")
    if not served.is_file():
        raise ApiError(404, f"{kind}: its file is gone (evidence retention)")
    log.info("%s of incident %s (%s) read by %s", kind, incident_id, entry.member_id, staff)
    return FileResponse(
        served,
        media_type=MEDIA_TYPES[kind],
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


def chosen(files: list[EvidenceFiles], member: str | None) -> EvidenceFiles:
    if member is not None:
        for entry in files:
            if entry.member_id == member:
                return entry
        raise ApiError(404, f"member: no camera evidence for candidate {member}")
    if not files:
        raise ApiError(404, "incident_id: no camera evidence")
    return files[0]
