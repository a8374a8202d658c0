"""The camera rules discovered from `plugins/`, and the models composed from them: the rules file
(`camera_rules.toml`: a block per rule, defaults and per-camera overrides) and the state kept per
camera (a field per rule; a zone rule keeps one per zone)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model, model_validator

from ioc.rulefiles import deep_merge, read_layered
from ioc.rules.camera import plugins
from ioc.rules.camera.base import CameraRule, Evidence, RuleConfig, RuleState
from ioc.rules.plugins import discover as find_plugins

RULES_PATH = Path(__file__).resolve().parent / "camera_rules.toml"
STATE_VERSION = 2

AnyRule = CameraRule[Any, Any]
ConfigT = TypeVar("ConfigT", bound=RuleConfig)


def discover() -> dict[str, AnyRule]:
    """One rule per plugin file, by name."""
    return find_plugins(plugins, CameraRule)


RULES = discover()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- The rules file ------------------------------------------------------------------------


class ObjectSize(_Strict):
    """The boxes a class may have, as shares of the frame's area: a "person" filling half the
    frame or a "car" of a few pixels is not one."""

    min_area: float = Field(0.0, ge=0, lt=1)
    max_area: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> ObjectSize:
        if self.min_area >= self.max_area:
            raise ValueError("min_area must be below max_area")
        return self

    def fits(self, area: float) -> bool:
        return self.min_area <= area <= self.max_area


class _Common(_Strict):
    track_lost_s: float = Field(gt=0, description="A track unseen this long has gone.")
    labels: dict[str, str] = Field(default_factory=dict, description="Class names in titles.")
    objects: dict[str, ObjectSize] = Field(
        default_factory=dict, description="Box sizes per class; detections outside are ignored."
    )


_RuleBlocks = create_model(
    "_RuleBlocks",
    __base__=_Common,
    **{name: (rule.config, ...) for name, rule in RULES.items()},
)


class CameraRules(_RuleBlocks):
    """Every rule for one camera, every value given."""

    def label(self, class_name: str) -> str:
        return self.labels.get(class_name, class_name)

    def of(self, rule: AnyRule) -> RuleConfig:
        config: RuleConfig = getattr(self, rule.name)
        return config

    def config(self, of: type[ConfigT]) -> ConfigT:
        """Another rule's block, by its model (a rule that builds on another's setting)."""
        for rule in RULES.values():
            if rule.config is of:
                config = getattr(self, rule.name)
                assert isinstance(config, of)
                return config
        raise KeyError(f"no camera rule is configured by {of.__name__}")


CameraOverride = create_model(
    "CameraOverride",
    __base__=_Strict,
    __doc__="Partial rules for one camera; merged into the defaults and validated when loaded.",
    track_lost_s=(float | None, None),
    labels=(dict[str, str] | None, None),
    objects=(dict[str, dict[str, float]] | None, None),
    **{name: (dict[str, Any] | None, None) for name in RULES},
)


class CameraRuleSet(CameraRules):
    """`camera_rules.toml`: the defaults, and per-camera overrides."""

    version: Literal[1]
    extends_bundled: bool = Field(
        False,
        description="Layer this file over the bundled camera_rules.toml: a site file then holds "
        "only what differs.",
    )
    cameras: dict[str, CameraOverride] = Field(default_factory=dict)
    _defaults: CameraRules | None = PrivateAttr(None)
    _merged: dict[str, CameraRules] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _merge_overrides(self) -> CameraRuleSet:
        base = self.model_dump(include=set(CameraRules.model_fields))
        self._defaults = CameraRules.model_validate(base)
        for camera_id, override in self.cameras.items():
            try:
                self._merged[camera_id] = CameraRules.model_validate(
                    deep_merge(base, override.model_dump(exclude_unset=True))
                )
            except ValueError as error:
                raise ValueError(f"cameras.{camera_id}: {error}") from None
        return self

    @classmethod
    def load(cls, path: Path | None = None) -> CameraRuleSet:
        return cls.model_validate(read_layered(path, RULES_PATH))

    def for_camera(self, camera_id: str) -> CameraRules:
        merged = self._merged.get(camera_id, self._defaults)
        assert merged is not None
        return merged


# --- The state kept per camera -------------------------------------------------------------


class _Kept(RuleState):
    version: Literal[2] = STATE_VERSION
    camera_id: str
    watching_since: datetime | None = Field(None, description="Offline clock before a frame.")
    last_arrival: datetime | None = Field(None, description="Kafka time of the latest frame.")
    source_offset: int | None = Field(
        None, description="Offset of the last message applied (its camera is on one partition)."
    )
    latest: Evidence | None = None


def _state_field(rule: AnyRule) -> tuple[Any, Any]:
    if rule.zone_kind is None:
        return rule.state, Field(default_factory=rule.state)
    return dict[str, rule.state], Field(default_factory=dict, description="By zone name.")


_RuleStates = create_model(
    "_RuleStates", __base__=_Kept, **{name: _state_field(rule) for name, rule in RULES.items()}
)


class CameraState(_RuleStates):
    """What the rules keep per camera between frames (a changelog-backed table value)."""

    @classmethod
    def start(cls, camera_id: str, now: datetime) -> CameraState:
        """A camera that is expected to send frames from `now` on (so it can be offline)."""
        return cls(camera_id=camera_id, watching_since=now.astimezone(UTC))

    @classmethod
    def from_json(cls, stored: bytes) -> CameraState:
        """A stored state, from this version or the one before the rules became plugins."""
        data = json.loads(stored)
        if "version" not in data:
            data = _from_version_1(data)
        return cls.model_validate(data)

    def of(self, rule: AnyRule) -> RuleState:
        kept: RuleState = getattr(self, rule.name)
        return kept

    def by_zone(self, rule: AnyRule) -> dict[str, RuleState]:
        kept: dict[str, RuleState] = getattr(self, rule.name)
        return kept


def _from_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept the fire window beside its episode, stops as `stays` and lines as `lines`
    and `line_counts`, each by zone."""
    lines, counts = data.pop("lines", {}), data.pop("line_counts", {})
    data["fire"] = {**data.get("fire", {}), "window": data.pop("fire_window", [])}
    data["stopped_vehicle"] = {
        zone: {"stays": [_stay_from_version_1(track, stay) for track, stay in stays.items()]}
        for zone, stays in data.pop("stays", {}).items()
    }
    data["line"] = {
        zone: {"tracks": lines.get(zone, {}), "counts": counts.get(zone, {})}
        for zone in lines | counts
    }
    return {**data, "version": STATE_VERSION}


def _stay_from_version_1(track: str, stay: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept a stop by track id and its centre. With no box to overlap, the stop ends at
    the first frame that shows its track again (or once unseen for `track_lost_s`): its incident
    resolves, and a stop kept by position starts where the vehicle is."""
    x, y = stay.pop("x"), stay.pop("y")
    return stay | {"box": (x, y, x, y), "track_id": int(track)}


__all__ = [
    "RULES",
    "RULES_PATH",
    "CameraOverride",
    "CameraRuleSet",
    "CameraRules",
    "CameraState",
    "ObjectSize",
    "discover",
]
