"""The challenge registry: an explicit name -> adapter class table (no lookup by class-name strings)."""

from __future__ import annotations

from typing import Any

from challenges.acdc import ACDC
from challenges.base import Adapter, load_config
from challenges.bcv import BCV
from challenges.chaos import CHAOS
from challenges.cremi import CREMI
from challenges.decathlon import Decathlon
from challenges.folder import Folder
from challenges.kits19 import KiTS19
from challenges.lits import LiTS
from challenges.msles import MSLesions
from challenges.promise12 import PROMISE12
from challenges.segthor import SegTHOR
from toolkit.errors import SegkitError

ADAPTERS: dict[str, type[Adapter]] = {
    "decathlon": Decathlon,
    "kits19": KiTS19,
    "acdc": ACDC,
    "lits": LiTS,
    "bcv": BCV,
    "promise12": PROMISE12,
    "msles": MSLesions,
    "segthor": SegTHOR,
    "chaos": CHAOS,
    "cremi": CREMI,
    "folder": Folder,
}


def get_adapter(name: str, overrides: dict[str, Any] | None = None) -> Adapter:
    """The adapter called ``name``, configured from its YAML plus ``overrides``."""
    cls = ADAPTERS.get(name)
    if cls is None:
        raise SegkitError(f"unknown challenge {name!r} (known: {', '.join(sorted(ADAPTERS))})")
    return cls(load_config(name, overrides, cls.facts))
