"""Rules files layered over the bundled ones: a site's file may say `extends_bundled = true` and
hold only what differs (sensor and camera rules read their files this way)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, tables merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_layered(path: Path | None, bundled: Path) -> dict[str, Any]:
    """The file at `path` (default: the bundled one) as data; with `extends_bundled = true` it is
    merged over the bundled file, whose `version` it keeps."""
    with (path or bundled).open("rb") as handle:
        data = tomllib.load(handle)
    if not data.get("extends_bundled"):
        return data
    with bundled.open("rb") as handle:
        base = tomllib.load(handle)
    return deep_merge(base, {key: value for key, value in data.items() if key != "version"})
