"""Checkpoints (docs/interfaces.md "Model folder and checkpoints"): atomic writes, weights_only loading, RNG.

A checkpoint holds only tensors, strings, numbers, lists and dicts, so ``torch.load(...,
weights_only=True)`` reads it: numpy's and Python's RNG states are converted to lists/tensors.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.dataset.labels import LabelSpec
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_path
from toolkit.network.architecture import UNetSpec


def capture_rng() -> dict[str, Any]:
    """torch / numpy / python RNG states as weights_only-safe values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]),
                   "gauss": py_state[2] if py_state[2] is None else float(py_state[2])},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def spec_to_dict(spec: UNetSpec) -> dict[str, Any]:
    """UNetSpec fields as plain lists (weights_only-safe), architecture included."""
    return spec.to_fields()


def same_spec(saved: Any, spec: UNetSpec) -> bool:
    """Whether a checkpoint's stored spec describes ``spec``'s network (a spec saved before the
    architecture fields existed is a plain U-Net with two convs per stage)."""
    try:
        return UNetSpec.from_fields(saved) == spec
    except (KeyError, TypeError, ValueError):
        return False


def label_fields(spec: LabelSpec) -> dict[str, Any]:
    """The label model a checkpoint records (docs/interfaces.md "Model folder and checkpoints"):
    ``label_outputs`` [[name, [values]], ...] one entry per output channel, ``has_regions``,
    ``regions_class_order`` (None for classes) and ``ignore_label`` (None without one); ``labels``
    (the label values) is written next to them as before."""
    return {"label_outputs": [[name, list(values)] for name, values in spec.outputs],
            "has_regions": spec.has_regions,
            "regions_class_order": list(spec.regions_class_order) if spec.regions_class_order else None,
            "ignore_label": spec.ignore}


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    """Write atomically: an interruption during the write leaves the previous checkpoint intact."""
    with atomic_write_path(path, suffix=".pt") as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise SegkitError("no checkpoint to resume from", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file: one line for the user
        raise SegkitError(f"unreadable checkpoint ({type(exc).__name__}: {exc})", path) from None


def to_cpu(obj: Any) -> Any:
    """Deep copy with every tensor moved to the CPU (the in-memory epoch-end snapshot)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj
