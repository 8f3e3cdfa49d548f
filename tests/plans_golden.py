"""Compare segkit's plans with nnunetv2's stored plans (tests/data/nnunet_plans_golden.json).

Shared by tests/test_planning_presets.py and bench/plans_vs_nnunet.py (which writes the golden file by
running the peer). nnU-Net stores its per-axis lists in transposed order (``transpose_forward`` puts the
coarsest axis first); segkit keeps the input's (z, y, x) order, so 3D lists are permuted back with
``transpose_backward`` before comparing. nnU-Net's 2d lists hold the in-plane axes ``transpose_forward[1:]``
in ascending, i.e. input, order already.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.dataset import DatasetSpec
from toolkit.planning import PlannerSettings, plan_experiment

GOLDEN = Path(__file__).resolve().parent / "data" / "nnunet_plans_golden.json"
COMPARED = ("spacing", "patch_size", "batch_size", "strides", "kernel_sizes", "features_per_stage",
            "n_blocks_per_stage", "n_conv_per_stage_decoder")


@dataclass(frozen=True)
class Row:
    config: str
    field: str
    ours: Any
    peer: Any
    ok: bool
    note: str = ""


def load_golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def dataset_spec(key: str, dataset: dict[str, Any]) -> DatasetSpec:
    return DatasetSpec(Path(f"Dataset900_{key}"), dict(dataset["channel_names"]), dict(dataset["labels"]),
                       int(dataset["numTraining"]), dataset["file_ending"], dict(dataset))


def _to_input_order(values: list, backward: list[int]) -> list:
    return [values[b] for b in backward]


def peer_in_input_order(config: str, peer: dict[str, Any], backward: list[int]) -> dict[str, Any]:
    """The peer configuration's compared fields, per-axis lists in the input's axis order."""
    c = peer
    out = {k: c[k] for k in ("batch_size", "features_per_stage", "n_blocks_per_stage", "n_conv_per_stage_decoder")}
    strides, kernels = c["strides"][1:], c["kernel_sizes"]
    if config == "2d":
        out.update(spacing=c["spacing"], patch_size=c["patch_size"], strides=strides, kernel_sizes=kernels)
        return out
    perm = lambda v: _to_input_order(v, backward)  # noqa: E731
    out.update(spacing=perm(c["spacing"]), patch_size=perm(c["patch_size"]), strides=[perm(s) for s in strides],
               kernel_sizes=[perm(k) for k in kernels])
    return out


def ours_compared(c: dict[str, Any]) -> dict[str, Any]:
    arch = c.get("architecture") or {}
    return {"spacing": c["spacing"], "patch_size": c["patch_size"], "batch_size": c["batch_size"],
            "strides": c["pool_strides"], "kernel_sizes": c["conv_kernel_sizes"],
            "features_per_stage": c["features_per_stage"], "n_blocks_per_stage": arch.get("n_blocks_per_stage"),
            "n_conv_per_stage_decoder": arch.get("n_conv_per_stage_decoder")}


def _equal(field: str, ours: Any, peer: Any) -> bool:
    if field == "batch_size":
        return abs(int(ours) - int(peer)) <= 1
    if field == "spacing":
        return len(ours) == len(peer) and all(abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(ours, peer, strict=True))
    return json.dumps(ours) == json.dumps(peer)


def compare_preset(key: str, entry: dict[str, Any], peer: dict[str, Any], settings: PlannerSettings) -> list[Row]:
    """One row per (configuration, compared field), plus one for the set of configurations."""
    plans, _ = plan_experiment(entry["fingerprint"], dataset_spec(key, entry["dataset"]), None, settings)
    ours_cfg, peer_cfg = plans["configurations"], peer["configurations"]
    rows = [Row("-", "configurations", sorted(ours_cfg), sorted(peer_cfg), sorted(ours_cfg) == sorted(peer_cfg))]
    transposed = list(plans["transpose_forward"]) != list(peer["transpose_forward"])
    for name in ("2d", "3d_fullres", "3d_lowres"):
        if name not in ours_cfg or name not in peer_cfg:
            continue
        ours = ours_compared(ours_cfg[name])
        theirs = peer_in_input_order(name, peer_cfg[name], peer["transpose_backward"])
        note = "2d slicing axis differs: segkit transpose_forward " \
               f"{plans['transpose_forward']} vs {peer['transpose_forward']}" if name == "2d" and transposed else ""
        rows += [Row(name, f, ours[f], theirs[f], _equal(f, ours[f], theirs[f]), note) for f in COMPARED]
    return rows
