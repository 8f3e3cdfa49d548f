"""What the network predicts, read from ``dataset.json`` ``labels`` (nnU-Net v2's label conventions).

Three kinds of label declaration exist, all in nnU-Net v2's raw format
(docs/interfaces.md "Region labels and the ignore label"):

- plain classes ``{"background": 0, "liver": 1, "tumour": 2}``: one softmax output per label value
  (background included), the prediction is the argmax;
- regions: at least one value is a list of several label values, e.g. BraTS
  ``{"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing tumour": 3}`` with
  ``"regions_class_order": [1, 2, 3]``. One sigmoid output per foreground region (scalar entries are
  one-value regions); a voxel belongs to a region when its label is one of the region's values; the
  prediction is written by thresholding each region's probability at 0.5 and painting
  ``regions_class_order[i]`` for region ``i`` in order, so later (inner) regions overwrite outer ones;
- ``"ignore": K``: voxels labelled K carry no annotation; K must be the highest value (max label + 1).
  The network has no output for it and no prediction ever contains it.

This module is torch-free: the training side turns the same rules into tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import SegkitError

IGNORE_NAME = "ignore"


@dataclass(frozen=True)
class LabelSpec:
    """The label model of a dataset: classes or regions, and the ignore value.

    ``outputs`` names one network output channel each: for plain classes ``(name, (value,))`` for every
    label value in ascending order, background first; for regions ``(name, values)`` per foreground
    region in ``dataset.json`` order (no background channel).
    """

    all_labels: tuple[int, ...]
    outputs: tuple[tuple[str, tuple[int, ...]], ...]
    has_regions: bool
    regions_class_order: tuple[int, ...] | None = None
    ignore: int | None = None

    @property
    def has_ignore(self) -> bool:
        return self.ignore is not None

    @property
    def num_outputs(self) -> int:
        """Network output channels: one per label value (softmax) or one per foreground region (sigmoid)."""
        return len(self.outputs)

    @property
    def foreground_labels(self) -> tuple[int, ...]:
        """Label values other than background and ignore (what foreground sampling looks for)."""
        return tuple(v for v in self.all_labels if v != 0)

    @property
    def regions(self) -> tuple[tuple[int, ...], ...]:
        """Foreground regions (each a tuple of label values); for plain classes one per foreground value."""
        return tuple(values for _, values in self.foreground_targets())

    def foreground_targets(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, label values) of every structure that is evaluated, in output order, background excluded."""
        if self.has_regions:
            return list(self.outputs)
        return [(name, values) for name, values in self.outputs if values != (0,)]

    @property
    def nonlinearity(self) -> str:
        """How logits become probabilities: ``sigmoid`` per region, else ``softmax`` over the classes."""
        return "sigmoid" if self.has_regions else "softmax"

    def target_keys(self) -> list[str]:
        """The metric key of every foreground target, in output order (see :func:`target_key`)."""
        return [target_key(values) for _, values in self.foreground_targets()]

    def names_by_key(self) -> dict[str, str]:
        """Metric key -> target name, for tables and reports."""
        return {target_key(values): name for name, values in self.foreground_targets()}

    def outside_probabilities(self) -> np.ndarray:
        """(C,) probabilities of voxels outside the cropped box: background 1 for classes, all 0 for regions."""
        out = np.zeros(self.num_outputs, dtype=np.float32)
        if not self.has_regions:
            out[self.all_labels.index(0)] = 1.0
        return out

    def seg_to_onehot(self, seg: np.ndarray) -> np.ndarray:
        """(len(all_labels), ...) float32 one-hot of a label map over ``all_labels`` (background included)."""
        return np.stack([seg == v for v in self.all_labels]).astype(np.float32)

    def seg_to_regions(self, seg: np.ndarray) -> np.ndarray:
        """(R, ...) boolean masks, one per foreground target: voxel label in the target's values."""
        return np.stack([np.isin(seg, values) for _, values in self.foreground_targets()])

    def probabilities_to_seg(self, probs: np.ndarray) -> np.ndarray:
        """Label map from (C, ...) probabilities: argmax -> label value, or regions thresholded at 0.5."""
        if probs.shape[0] != self.num_outputs:
            raise SegkitError(f"{probs.shape[0]} probability channels but the labels define {self.num_outputs}")
        dtype = np.uint8 if max(self.all_labels) < 256 else np.uint16
        if not self.has_regions:
            lut = np.asarray(self.all_labels, dtype=dtype)
            return lut[np.argmax(probs, axis=0)]
        seg = np.zeros(probs.shape[1:], dtype=dtype)
        for channel, value in zip(probs, self.regions_class_order, strict=True):
            seg[channel > 0.5] = value
        return seg


def target_key(target: int | Sequence[int]) -> str:
    """JSON key of an evaluated target: ``"2"`` for one label value, ``"(1, 2, 3)"`` for a region of
    several values (nnU-Net v2's ``label_or_region_to_key`` form)."""
    values = (int(target),) if isinstance(target, int | np.integer) else tuple(int(v) for v in target)
    return str(values[0]) if len(values) == 1 else "(" + ", ".join(map(str, values)) + ")"


def target_values(target: int | Sequence[int]) -> tuple[int, ...]:
    """Label values of a target given as one value or a sequence of values."""
    return (int(target),) if isinstance(target, int | np.integer) else tuple(int(v) for v in target)


def _values(name: str, value: Any, where: Path | None) -> tuple[int, ...]:
    values = value if isinstance(value, list | tuple) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise SegkitError(f"label {name!r} must be an integer or a non-empty list of integers", where)
    return tuple(int(v) for v in values)


def label_spec(labels: dict[str, Any], regions_class_order: Sequence[int] | None = None,
               where: Path | None = None, require_order: bool = True) -> LabelSpec:
    """Validate ``dataset.json`` ``labels`` (+ ``regions_class_order``) into a :class:`LabelSpec`.

    Raises :class:`SegkitError` (naming ``where``) for the declarations nnU-Net v2 rejects: no
    background 0, an ignore label that is a list or not the highest value, regions without a
    ``regions_class_order`` of one entry per foreground region. ``require_order=False`` accepts
    regions without an order (the spec's ``regions_class_order`` is then None): for callers that
    never paint a label map, such as preprocessing, which reads only the plans' ``labels``.
    """
    if labels.get("background") != 0 or isinstance(labels.get("background"), bool):
        raise SegkitError("labels must declare \"background\": 0", where)
    ignore = None
    declared: dict[str, tuple[int, ...]] = {}
    for name, value in labels.items():
        if name.lower() == IGNORE_NAME:
            if isinstance(value, bool) or not isinstance(value, int):
                raise SegkitError(f"the ignore label must be one integer, not {value!r}", where)
            ignore = int(value)
            continue
        declared[name] = _values(name, value, where)
    all_labels = tuple(sorted({v for values in declared.values() for v in values} | {0}))
    if ignore is not None and ignore != max(all_labels) + 1:
        raise SegkitError(f"the ignore label must be the highest label value ({max(all_labels) + 1}), "
                          f"not {ignore}", where)
    has_regions = any(len(set(values)) > 1 for values in declared.values())
    if not has_regions:
        names = {values[0]: name for name, values in declared.items()}
        outputs = tuple((names[v], (v,)) for v in all_labels)
        return LabelSpec(all_labels, outputs, False, None, ignore)
    outputs = tuple((name, values) for name, values in declared.items() if set(values) != {0})
    if regions_class_order is None and not require_order:
        return LabelSpec(all_labels, outputs, True, None, ignore)
    if regions_class_order is None:
        raise SegkitError("region labels (lists) need \"regions_class_order\" in dataset.json", where)
    order = tuple(int(v) for v in regions_class_order)
    if len(order) != len(outputs):
        raise SegkitError(f"regions_class_order has {len(order)} entries but {len(outputs)} regions are declared",
                          where)
    return LabelSpec(all_labels, outputs, True, order, ignore)


def dataset_label_spec(dataset_json: dict[str, Any], where: Path | None = None) -> LabelSpec:
    """:func:`label_spec` of a loaded ``dataset.json`` (or a plans.json that copies its labels)."""
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict):
        raise SegkitError("no 'labels' object", where)
    return label_spec(labels, dataset_json.get("regions_class_order"), where)
