"""Input events: 1022 tickets, sensor observations, camera frames and their detections."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, field_validator, model_validator

from ioc.models.base import WireModel
from ioc.models.categories import Category

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


# Vietnam, islands included (Hoàng Sa, Trường Sa): reports outside are a typo or a test.
VIETNAM_LAT = (7.0, 23.5)
VIETNAM_LON = (102.0, 117.5)
MAX_DESCRIPTION = 4000
MAX_ANSWER = 2000  # a free-text answer to a service's question (Open311 `attribute[code]`)
AttributeCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Answer = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ANSWER)
]

Channel = Literal["phone", "app", "web", "zalo", "email"]


class Ticket(WireModel):
    """A citizen report as it reaches the 1022 hotline (Open311 GeoReport v2 field names + channel).

    `phone`, `email`, `first_name`, `last_name` are personal data: they exist only on the intake
    topic and are replaced by a keyed hash and a masked form before anything is stored.
    `service_code` is one of the categories, or absent for triage to decide.
    `attributes` holds the answers to the service's questions (`ioc.hotline.attributes`), code →
    values as validated at intake; they never go into `description`, the citizen's own words.
    `expected` carries the labels of sample tickets and is ignored by the pipeline.
    """

    service_request_id: NonEmpty
    requested_datetime: AwareDatetime
    channel: Channel
    description: NonEmpty = Field(max_length=MAX_DESCRIPTION)
    service_code: Category | None = None
    address_string: str | None = Field(None, max_length=500)
    lat: float | None = Field(None, ge=VIETNAM_LAT[0], le=VIETNAM_LAT[1])
    long: float | None = Field(None, ge=VIETNAM_LON[0], le=VIETNAM_LON[1])
    media_url: str | None = Field(None, max_length=2000)
    phone: str | None = Field(None, max_length=32)
    email: str | None = Field(None, max_length=254)
    first_name: str | None = Field(None, max_length=100)
    last_name: str | None = Field(None, max_length=100)
    attributes: dict[AttributeCode, Annotated[tuple[Answer, ...], Field(min_length=1)]] = Field(
        default_factory=dict
    )
    expected: dict[str, object] | None = None

    @model_validator(mode="after")
    def _located(self) -> Ticket:
        if (self.lat is None) != (self.long is None):
            raise ValueError("lat and long come together")
        return self


class SensorEvent(WireModel):
    """One observation in canonical units (see `ioc.sensors.fiware`, which reads the FIWARE
    payloads devices send): sensor id, FIWARE type, observed time, measurements, location."""

    id: NonEmpty
    type: NonEmpty
    date_observed: AwareDatetime = Field(alias="dateObserved")
    measurements: dict[str, float] = Field(min_length=1)
    location: tuple[float, float] | None = Field(None, description="(lat, lon) when sent.")
    warnings: tuple[str, ...] = Field(
        (), description="Measured attributes dropped as unusable, with why: for the sender to see."
    )

    @field_validator("measurements")
    @classmethod
    def _finite(cls, values: dict[str, float]) -> dict[str, float]:
        bad = [
            name for name, value in values.items() if value != value or abs(value) == float("inf")
        ]
        if bad:
            raise ValueError(f"non-finite measurement(s): {', '.join(bad)}")
        return values


class FrameHeaders(WireModel):
    """Kafka headers of a camera frame; the value is the JPEG bytes themselves."""

    camera_id: NonEmpty
    event_time: AwareDatetime
    seq: int = Field(ge=0)

    def to_kafka(self) -> list[tuple[str, bytes]]:
        return [
            ("camera_id", self.camera_id.encode()),
            ("event_time", self.event_time.isoformat().encode()),
            ("seq", str(self.seq).encode()),
        ]

    @classmethod
    def from_kafka(
        cls, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]
    ) -> FrameHeaders:
        values = {key: value.decode() for key, value in headers}
        return cls.model_validate(values)


class BoundingBox(WireModel):
    """Pixel corners in the frame as sent."""

    x1: float
    y1: float
    x2: float
    y2: float


class Detection(WireModel):
    class_name: str
    score: float = Field(ge=0, le=1)
    box: BoundingBox
    track_id: int | None = Field(None, description="Same object across a camera's frames.")


class FrameStats(WireModel):
    """Whole-frame statistics for camera health, from a small grey thumbnail of the frame."""

    luma_mean: float = Field(ge=0, le=255)
    luma_std: float = Field(ge=0, description="Near 0: a black, white or covered view.")
    signature: str = Field(
        pattern=r"^[0-9a-f]{16}$",
        description="64-bit difference hash: similar views, few differing bits (tamper check).",
    )
    digest: str = Field(
        pattern=r"^[0-9a-f]{16}$",
        description="Hash of the JPEG bytes: a frozen camera repeats it exactly.",
    )


class FrameDetections(WireModel):
    """What the vision worker saw in one frame."""

    camera_id: str
    event_time: AwareDatetime
    seq: int
    frame_partition: int
    frame_offset: int
    ingested_at_ms: int = Field(description="Kafka timestamp of the frame: the latency origin.")
    model: str
    inference_ms: float
    width: int
    height: int
    detections: list[Detection]
    stats: FrameStats | None = None
    dropped: int = Field(
        0,
        ge=0,
        description="Older frames of this camera skipped since the previous one (overload).",
    )
