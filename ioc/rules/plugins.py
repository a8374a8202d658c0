"""Finding rule plugins: one module per rule in a package, each defining one subclass of the
rule kind's base class. Camera and sensor rules are discovered the same way."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any, Protocol, TypeVar


class Named(Protocol):
    name: Any


RuleT = TypeVar("RuleT", bound=Named)


def discover(package: ModuleType, base: type[RuleT]) -> dict[str, RuleT]:
    """One rule per module of `package` (its `__path__` may be extended first), by name."""
    found: dict[str, RuleT] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        classes = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, base)
            and value.__module__ == module.__name__
        ]
        if len(classes) != 1:
            raise ImportError(f"{module.__name__}: a plugin defines one {base.__name__} subclass")
        rule = classes[0]()
        if rule.name in found:
            raise ImportError(f"{module.__name__}: a second rule named {rule.name!r}")
        found[rule.name] = rule
    return found
