"""The human-readable plans table (one column per configuration), like the paper's per-dataset tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROWS = (
    ("target spacing (mm)", lambda c: _x(c["spacing"], "{:.3g}")),
    ("median shape", lambda c: _x(c["median_shape"], "{:.0f}")),
    ("patch size", lambda c: _x(c["patch_size"])),
    ("batch size", lambda c: str(c["batch_size"])),
    ("poolings per axis", lambda c: _x(c["num_pool_per_axis"])),
    ("pool strides", lambda c: " ".join(_x(s, sep="") for s in c["pool_strides"])),
    ("conv kernels", lambda c: " ".join(_x(k, sep="") for k in c["conv_kernel_sizes"])),
    ("features", lambda c: f"{c['features_per_stage'][0]}..{c['features_per_stage'][-1]}"
                           f" ({len(c['features_per_stage'])} stages)"),
    ("network", lambda c: _network(c.get("architecture"))),
    ("normalization", lambda c: ", ".join(n + ("+mask" if m else "") for n, m in
                                          zip(c["normalization"], c["use_mask_for_norm"], strict=True))),
    ("memory (est/budget)", lambda c: f"{c['batch_size'] * c['estimated_feature_map_voxels'] / c['memory_budget_voxels']:.2f}"
     if "estimated_feature_map_voxels" in c else "-"),
)


def _network(arch: Mapping[str, Any] | None) -> str:
    """``plain`` / ``residual encoder`` with the encoder blocks and decoder convs per stage."""
    if not arch:
        return "plain (2 convs per stage)"
    name = {"residual_encoder_unet": "residual encoder", "plain_unet": "plain"}.get(arch.get("name"), arch.get("name"))
    counts = [("blocks", arch.get("n_blocks_per_stage")), ("decoder", arch.get("n_conv_per_stage_decoder"))]
    return " ".join([str(name)] + [f"{label} {'-'.join(str(v) for v in vals)}" for label, vals in counts if vals])


def _x(values: Any, fmt: str = "{}", sep: str = "x") -> str:
    return sep.join(fmt.format(v) for v in values)


def format_plans_table(plans: Mapping[str, Any]) -> str:
    """Render the configurations of a plans dict as an aligned text table."""
    configs = plans["configurations"]
    names = list(configs)
    cells = [[label] + [render(configs[n]) for n in names] for label, render in ROWS]
    header = [f"{plans.get('dataset_name', '')} ({plans.get('preset', 'default')}, "
              f"{plans.get('gpu_memory_gb', '?')} GB)"] + names
    for n in names:
        if "previous_stage" in configs[n]:
            header[names.index(n) + 1] = f"{n} (after {configs[n]['previous_stage']})"
    table = [header] + cells
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
