"""Axis order between the input arrays and the engine (nnU-Net v2's ``transpose_forward``).

nnU-Net puts the coarsest axis of the full-resolution target spacing first, so that the 2d
configuration always slices through it and works on the two finest axes. segkit does the same, but
plans.json keeps every per-axis list in the input's own (z, y, x) order so that plans read like the
data. Two orders therefore exist:

- *input order*: the axes of the raw arrays (numpy order of the SimpleITK image, see
  toolkit/io/images.py); plans.json lists use it; for 2d, lists hold the two in-plane axes in input
  order (e.g. coarse axis 1: the 2d lists are for axes (0, 2));
- *working order*: the input axes permuted by ``transpose_forward`` (working axis i = input axis
  ``transpose_forward[i]``); planning, preprocessed arrays, training and the sliding window use it.

This module is the one place that converts between them: the planner plans in working order and
stores input order (:func:`entry_to_input`); the engine reads configurations through
:func:`working_entry`. Pure numpy/python: planning must not import torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from toolkit.errors import SegkitError

IDENTITY = [0, 1, 2]
PER_AXIS_KEYS = ("spacing", "median_shape", "patch_size", "num_pool_per_axis")  # one value per axis
PER_STAGE_AXIS_KEYS = ("conv_kernel_sizes", "pool_strides")  # one per-axis list per stage


def inverse(perm: Sequence[int]) -> list[int]:
    """The permutation that undoes ``perm`` (``inverse(p)[p[i]] == i``)."""
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[int(p)] = i
    return out


def nnunet_transpose(spacing: Sequence[float]) -> tuple[list[int], list[int]]:
    """(transpose_forward, transpose_backward) for a full-resolution target spacing, as nnU-Net v2.

    The axis with the largest spacing first (the first such axis on ties, as ``np.argmax``), the
    others in their input order; backward is the inverse. Isotropic or axial data gives the identity.
    """
    coarse = int(np.argmax(np.asarray(spacing, dtype=np.float64)))
    forward = [coarse] + [a for a in range(len(spacing)) if a != coarse]
    return forward, inverse(forward)


def plans_transpose(plans: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """The plans' (forward, backward), checked; plans without the keys are the identity."""
    raw_fwd = plans.get("transpose_forward", IDENTITY)
    try:
        forward = [int(a) for a in raw_fwd]
    except (TypeError, ValueError):
        forward = []
    if sorted(forward) != IDENTITY:
        raise SegkitError(f"plans.json: transpose_forward {raw_fwd!r} is not a permutation of [0, 1, 2]")
    backward = inverse(forward)
    given = plans.get("transpose_backward")
    if given is not None and [int(a) for a in given] != backward:
        raise SegkitError(f"plans.json: transpose_backward {list(given)} is not the inverse of "
                          f"transpose_forward {forward} (expected {backward})")
    return forward, backward


def input_axes(forward: Sequence[int], n: int) -> list[int]:
    """Input axes of the ``n`` (3, or 2 for 2d) working axes of a plan list, in working order."""
    if n == 3:
        return [int(a) for a in forward]
    if n == 2:
        return [int(a) for a in forward[1:]]
    raise ValueError(f"plan lists have 2 or 3 entries, got {n}")


def to_working(values: Sequence[Any], forward: Sequence[int]) -> list[Any]:
    """A per-axis list from input order (2d: in-plane axes sorted) into working order."""
    axes = input_axes(forward, len(values))
    stored = sorted(axes)
    return [values[stored.index(a)] for a in axes]


def to_input(values: Sequence[Any], forward: Sequence[int]) -> list[Any]:
    """A per-axis list from working order into input order (inverse of :func:`to_working`)."""
    axes = input_axes(forward, len(values))
    return [values[axes.index(a)] for a in sorted(axes)]


def _convert(entry: Mapping[str, Any], forward: Sequence[int], fn) -> dict[str, Any]:
    out = dict(entry)
    for key in PER_AXIS_KEYS:
        if key in out and out[key] is not None:
            out[key] = fn(list(out[key]), forward)
    for key in PER_STAGE_AXIS_KEYS:
        if key in out and out[key] is not None:
            out[key] = [fn(list(v), forward) for v in out[key]]
    return out


def entry_to_working(entry: Mapping[str, Any], forward: Sequence[int]) -> dict[str, Any]:
    """A configuration entry of plans.json (input order) with its per-axis lists in working order."""
    return _convert(entry, forward, to_working)


def entry_to_input(entry: Mapping[str, Any], forward: Sequence[int]) -> dict[str, Any]:
    """A configuration entry planned in working order with its per-axis lists in input order."""
    return _convert(entry, forward, to_input)


def working_entry(plans: Mapping[str, Any], config: str) -> dict[str, Any]:
    """What the engine reads: configuration ``config`` of ``plans`` in working order.

    For identity transposes this is the plans' own entry object, so axial work directories run
    exactly as before.
    """
    entry = plans["configurations"][config]
    forward, _ = plans_transpose(plans)
    return entry if forward == IDENTITY else entry_to_working(entry, forward)


def array_to_working(array: np.ndarray, forward: Sequence[int], lead: int = 1) -> np.ndarray:
    """Transpose the last three axes of ``array`` (after ``lead`` leading axes) into working order (a view)."""
    return array if list(forward) == IDENTITY else array.transpose(*range(lead), *(a + lead for a in forward))


def array_to_input(array: np.ndarray, forward: Sequence[int], lead: int = 1) -> np.ndarray:
    """Transpose the last three axes of ``array`` from working back to input order (contiguous)."""
    if list(forward) == IDENTITY:
        return array
    back = inverse(forward)
    return np.ascontiguousarray(array.transpose(*range(lead), *(a + lead for a in back)))
