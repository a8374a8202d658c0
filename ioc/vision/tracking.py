"""Track ids across a camera's frames, so the camera rules can follow one vehicle or person.

One ByteTrack (ultralytics' own) per camera, fed each processed frame's detections in order.
Its state lives in the worker's memory: after a restart or a rebalance a camera's tracks start
again. Ids are offset by a per-process base, so a restarted worker never hands out an id that the
camera rules may still remember for another object.
"""

from __future__ import annotations

import time

import numpy as np

from ioc.models import Detection

# Frames a lost track is kept for. ultralytics scales its buffer by frame rate / 30; cameras here
# are sampled at 0.5-5 fps, so the buffer is counted in frames, not seconds.
TRACK_BUFFER_FRAMES = 30
IDS_PER_BASE = 10_000  # ids stay below 2**31 (the detections table's integer column)


def process_id_base(now: float | None = None) -> int:
    """A base that differs between worker starts (by the clock) and leaves room for ids."""
    return int(now if now is not None else time.time()) % 200_000 * IDS_PER_BASE


class CameraTracks:
    """Adds `track_id` to detections, one tracker per camera."""

    def __init__(self, id_base: int | None = None) -> None:
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import IterableSimpleNamespace

        self._tracker_type = BYTETracker
        self._args = IterableSimpleNamespace(
            tracker_type="bytetrack",
            track_high_thresh=0.25,
            track_low_thresh=0.1,
            new_track_thresh=0.25,
            track_buffer=TRACK_BUFFER_FRAMES,
            match_thresh=0.8,
            fuse_score=True,
        )
        self._base = process_id_base() if id_base is None else id_base
        self._trackers: dict[str, object] = {}
        self._class_ids: dict[str, int] = {}

    def assign(
        self, camera_id: str, detections: list[Detection], shape: tuple[int, int]
    ) -> list[Detection]:
        """The same detections, in order, with `track_id` where a track holds them.

        A box seen for the first time gets its id from the next frame that confirms it (ByteTrack
        confirms new tracks on a second sighting, except on a camera's very first frame).
        """
        from ultralytics.engine.results import Boxes

        tracker = self._trackers.get(camera_id)
        if tracker is None:
            tracker = self._trackers[camera_id] = self._tracker_type(self._args)
        rows = np.array(
            [
                [d.box.x1, d.box.y1, d.box.x2, d.box.y2, d.score, self._class_id(d.class_name)]
                for d in detections
            ],
            dtype=np.float32,
        ).reshape(-1, 6)
        tracked = tracker.update(Boxes(rows, shape))  # type: ignore[attr-defined]
        ids = {int(row[7]): int(row[4]) for row in tracked}
        return [
            d.model_copy(update={"track_id": self._base + ids[i]}) if i in ids else d
            for i, d in enumerate(detections)
        ]

    def _class_id(self, name: str) -> int:
        return self._class_ids.setdefault(name, len(self._class_ids))

    def forget(self, camera_ids: set[str]) -> None:
        """Drop the trackers of cameras this worker no longer owns (partitions revoked)."""
        for camera_id in camera_ids:
            self._trackers.pop(camera_id, None)
