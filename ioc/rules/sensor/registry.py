"""The sensor rules discovered from `plugins/`, and the models composed from them: the rules file
(`sensor_rules.toml`: a block per rule under each FIWARE type, and per-sensor overrides) and
`SensorRules`, every check resolved for one sensor."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, create_model, model_validator

from ioc.models.registry import SensorSpec
from ioc.rulefiles import deep_merge, read_layered
from ioc.rules.plugins import discover as find_plugins
from ioc.rules.sensor import plugins
from ioc.rules.sensor.base import Check, Reporter, SensorRule, Strict

RULES_PATH = Path(__file__).resolve().parent / "sensor_rules.toml"

AnyRule = SensorRule[Any, Any]


def discover() -> dict[str, AnyRule]:
    """One rule per plugin file, by name."""
    return find_plugins(plugins, SensorRule)


RULES = discover()
TICKED = {name for name, rule in RULES.items() if type(rule).on_tick is not SensorRule.on_tick}


class _Windows(Strict):
    grace_seconds: float = Field(120.0, ge=0)
    window_seconds: int = Field(60, gt=0)


_TypeBlocks = create_model(
    "_TypeBlocks",
    __base__=_Windows,
    **{name: (rule.config | None, None) for name, rule in RULES.items()},
)


class TypeRules(_TypeBlocks):
    """The rules of one FIWARE type: windows, and a block per rule (absent: not judged)."""


SensorOverride = create_model(
    "SensorOverride",
    __base__=Strict,
    __doc__="Partial rules for one sensor; merged into its type's and validated when loaded.",
    type=(str, ...),
    grace_seconds=(float | None, None),
    window_seconds=(int | None, None),
    **{name: (dict[str, Any] | None, None) for name in RULES},
)

_Checks = create_model(
    "_Checks",
    __base__=Strict,
    sensor_id=(str, ...),
    name=(str, ...),
    type=(str, ...),
    grace_seconds=(float, ...),
    window_seconds=(int, ...),
    **{name: (rule.check | None, None) for name, rule in RULES.items()},
)


class SensorRules(_Checks):
    """Everything the engine needs for one sensor: a check per rule that applies to it."""

    @cached_property
    def active(self) -> list[tuple[AnyRule, Check, Reporter]]:
        """The rules that apply, each with its check and this sensor's reporter."""
        return [
            (rule, check, Reporter(self.sensor_id, self.name, name))
            for name, rule in RULES.items()
            if (check := getattr(self, name)) is not None
        ]

    @cached_property
    def tracked(self) -> frozenset[str]:
        """Properties whose recent readings the rules judge."""
        return frozenset(check.property for _, check, _ in self.active if check.property)

    @cached_property
    def horizon(self) -> timedelta:
        """How far back readings are kept: the longest reach of any check, plus the grace and
        the window (a reading may still arrive that late)."""
        reach = max((check.keep_minutes() for _, check, _ in self.active), default=0.0)
        return timedelta(minutes=reach, seconds=self.grace_seconds + self.window_seconds)


class RuleSet(Strict):
    """`sensor_rules.toml`: defaults per FIWARE type and per-sensor overrides."""

    version: Literal[1]
    extends_bundled: bool = Field(
        False,
        description="Layer this file over the bundled sensor_rules.toml: a site file then holds "
        "only what differs (a sensor's override, a type's hold time) instead of a copy of it all.",
    )
    types: dict[str, TypeRules] = Field(default_factory=dict)
    sensors: dict[str, SensorOverride] = Field(default_factory=dict)
    _merged: dict[str, TypeRules] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _merge_overrides(self) -> RuleSet:
        for sensor_id, override in self.sensors.items():
            base = self.types.get(override.type, TypeRules()).model_dump(exclude_unset=True)
            patch = override.model_dump(exclude_unset=True, exclude={"type"})
            try:
                self._merged[sensor_id] = TypeRules.model_validate(deep_merge(base, patch))
            except ValueError as error:
                raise ValueError(f"sensors.{sensor_id}: {error}") from None
        return self

    @classmethod
    def load(cls, path: Path | None = None) -> RuleSet:
        return cls.model_validate(read_layered(path, RULES_PATH))

    def type_rules(self, spec: SensorSpec) -> TypeRules:
        """The sensor's type rules, with its override merged in."""
        override = self.sensors.get(spec.id)
        if override is None:
            return self.types.get(spec.type, TypeRules())
        if override.type != spec.type:
            raise ValueError(
                f"rules for sensor {spec.id} are for type {override.type}, "
                f"the registry says {spec.type}"
            )
        return self._merged[spec.id]

    def for_sensor(self, spec: SensorSpec) -> SensorRules:
        rules = self.type_rules(spec)
        checks = {
            name: rule.resolve(config, spec)
            for name, rule in RULES.items()
            if (config := getattr(rules, name)) is not None and config.enabled
        }
        return SensorRules(
            sensor_id=spec.id,
            name=spec.name,
            type=spec.type,
            grace_seconds=rules.grace_seconds,
            window_seconds=rules.window_seconds,
            **checks,
        )


__all__ = [
    "RULES",
    "RULES_PATH",
    "TICKED",
    "RuleSet",
    "SensorOverride",
    "SensorRules",
    "TypeRules",
    "discover",
]
