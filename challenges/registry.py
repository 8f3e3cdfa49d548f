"""The challenge registry: an explicit name -> adapter class table (no lookup by class-name strings)."""

from __future__ import annotations

from typing import Any

from challenges.base import Adapter, load_config
from challenges.decathlon import Decathlon
from toolkit.errors import SegkitError

ADAPTERS: dict[str, type[Adapter]] = {
    "decathlon": Decathlon,
}


def get_adapter(name: str, overrides: dict[str, Any] | None = None) -> Adapter:
    """The adapter called ``name``, configured from its YAML plus ``overrides``."""
    cls = ADAPTERS.get(name)
    if cls is None:
        raise SegkitError(f"unknown challenge {name!r} (known: {', '.join(sorted(ADAPTERS))})")
    return cls(load_config(name, overrides))
