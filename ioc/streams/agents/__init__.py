"""The streams app's agents, one module each, named after the topic it reads.

Each module has `register(ctx)`, which builds what the agent needs from the `StreamContext` and
registers the agent on its app; `register_all` finds the modules, so a new agent is a new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from ioc.streams.context import StreamContext


def agent_modules() -> list[ModuleType]:
    names = sorted(info.name for info in pkgutil.iter_modules(__path__))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def register_all(ctx: StreamContext) -> None:
    for module in agent_modules():
        module.register(ctx)


__all__ = ["agent_modules", "register_all"]
