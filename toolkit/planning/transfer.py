"""``segkit plan TARGET --like SOURCE_PLANS.json``: another dataset's plans, moved to this one (fine-tuning).

A network pretrained on the source dataset can only be fine-tuned on the target if both share the
network topology, patch size and spacing, so the target is planned by copying the source's
configurations verbatim (nnU-Net v2's ``move_plans_between_datasets``: the same plans, renamed to
the target dataset). What describes the *data* is the target's own:
- labels, ``num_classes``, channel names, ``num_training`` and the median spacing/shape come from the
  target (its dataset.json and fingerprint);
- ``foreground_intensity_properties_per_channel`` comes from the target's fingerprint, so CT
  normalisation (the scheme is the source's) clips and scales with the target's own foreground
  statistics. nnU-Net keeps the source's statistics here; segkit follows the issue's rule that the
  target's intensities are normalised with the target's statistics.
The channel count must match (the first convolution's weights depend on it): otherwise one-line error.
``transferred_from`` records the source plans' path, SHA-256 and dataset name.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.dataset import DatasetSpec
from toolkit.errors import SegkitError

_CT_KEYS = ("mean", "std", "percentile_00_5", "percentile_99_5")


def _check_source(source: Any, path: Path) -> None:
    if not isinstance(source, Mapping) or not isinstance(source.get("configurations"), Mapping) \
            or not source["configurations"]:
        raise SegkitError("not a plans.json (no 'configurations')", path)
    if not isinstance(source.get("channel_names"), Mapping):
        raise SegkitError("plans.json has no 'channel_names'", path)


def _check_ct(source: Mapping[str, Any], stats: Any, path: Path) -> None:
    """A channel the source normalises as CT needs the target's foreground statistics."""
    ct = sorted({c for cfg in source["configurations"].values()
                 for c, scheme in enumerate(cfg.get("normalization") or []) if scheme == "ct"})
    for c in ct:
        entry = stats.get(str(c)) if isinstance(stats, Mapping) else None
        if not isinstance(entry, Mapping) or any(entry.get(k) is None for k in _CT_KEYS):
            raise SegkitError(f"the source plans normalise channel {c} as CT but the target's fingerprint has no "
                              "foreground statistics for it (no labelled foreground voxels?)", path)


def transfer_plans(source: Any, source_path: str | Path, fingerprint: Mapping[str, Any],
                   dataset: DatasetSpec) -> tuple[dict[str, Any], list[str]]:
    """The source plans moved to ``dataset`` (module docstring), and a trace of what came from where."""
    path = Path(source_path)
    _check_source(source, path)
    theirs, ours = len(source["channel_names"]), dataset.num_channels
    if theirs != ours:
        raise SegkitError(f"the source plans are for {theirs} input channel(s), the target dataset has {ours}; "
                          "--like needs the same channels", path)
    stats = fingerprint["foreground_intensity_properties_per_channel"]
    _check_ct(source, stats, path)
    plans = copy.deepcopy(dict(source))
    spacings = np.asarray(fingerprint["spacings"], dtype=float)
    shapes = np.asarray(fingerprint["shapes_after_crop"], dtype=float)
    plans.update({
        "dataset_name": dataset.name,
        "num_training": int(dataset.num_training) or len(spacings),
        "num_classes": dataset.num_classes,
        "labels": dict(dataset.labels),
        "channel_names": dict(dataset.channel_names),
        "original_median_spacing": [float(v) for v in np.median(spacings, axis=0)],
        "original_median_shape": [float(v) for v in np.median(shapes, axis=0)],
        "foreground_intensity_properties_per_channel": stats,
        "transferred_from": {"plans": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                             "dataset_name": source.get("dataset_name")},
    })
    trace = [f"[transfer] plans of {source.get('dataset_name')!r} ({path}) moved to {dataset.name!r}",
             f"kept from the source: configurations {', '.join(plans['configurations'])} (spacing, patch size, "
             "topology, batch size, normalisation schemes)",
             f"from the target: labels ({dataset.num_classes} classes), channel names, foreground intensity "
             "statistics (CT normalisation), median spacing/shape"]
    return plans, trace
