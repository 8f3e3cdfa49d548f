"""Predictions back to the raw image: resample, label map, paste, write with the input's exact geometry.

Probabilities (C, *working axes) at the plan's spacing are resampled to the cropped original shape
(linear, nearest along the separate-z axis, docs/method.md 1.3), turned into a label map by the label
model (:meth:`toolkit.dataset.labels.LabelSpec.probabilities_to_seg`: argmax mapped to label values, or
regions thresholded at 0.5 painted in ``regions_class_order``), pasted into the uncropped volume
(background outside the crop box), transposed back from
working to input axis order (the case's ``transpose_forward``, toolkit/planning/axes.py) and written
with the geometry recorded at preprocessing time, so the file overlays the input exactly.

Bounded memory: the output is produced in slabs along the first axis. Each slab needs only the
input slices its interpolation taps touch, so peak memory is the input plus one slab of every class
(``SLAB_BYTES``) plus the uint8/int16 label volume, whatever the image size.
Backends: ``numpy`` (the separable resampler of :mod:`toolkit.preprocessing.resampling`, one class at
a time) and ``torch`` (bilinear in-plane by ``F.interpolate``, then the first axis by a 2-tap
gather). Both compute the same function. ``auto`` takes torch only for probabilities that live on an
accelerator (no copy to the host before resampling); on CPU numpy won, measured by
``bench/export_memory.py`` (500x512x512, 4 classes, probabilities 1474 MiB, this 2-core machine, one
run): numpy slabs 17.1 s, +621 MiB peak RSS over the probabilities; torch slabs 40.9 s, +1210 MiB;
torch on the whole volume at once 53.6 s, +6482 MiB.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.dataset.labels import LabelSpec, label_spec
from toolkit.io.atomic import atomic_write_path
from toolkit.io.images import Geometry, write_image
from toolkit.planning.axes import IDENTITY, array_to_input
from toolkit.preprocessing.resampling import (
    axis_orders,
    grid_coords,
    kernel_taps,
    resize_axis,
    separate_z_axis,
)

SLAB_BYTES = 256 * 2**20


def _slabs(n_in: int, n_out: int, order: int, per_slice_bytes: int):
    """Yield (output range, input range, coords relative to the input range) along axis 0."""
    step = max(1, SLAB_BYTES // max(per_slice_bytes, 1))
    for o0 in range(0, n_out, step):
        o1 = min(n_out, o0 + step)
        coords = grid_coords(n_in, n_out, o0, o1)
        idx = np.concatenate([i for i, _ in kernel_taps(coords, n_in, order)])
        i0, i1 = int(idx.min()), int(idx.max()) + 1
        yield (o0, o1), (i0, i1), coords - i0


def _numpy_slab(probs, in_range, coords, out_shape, orders) -> np.ndarray:
    """(K, slab, Y, X) float32 for one slab, resampled class by class."""
    k = probs.shape[0]
    out = np.empty((k, len(coords), *out_shape[1:]), dtype=np.float32)
    for c in range(k):
        arr = probs[c, in_range[0]:in_range[1]]
        arr = np.asarray(arr.float() if hasattr(arr, "float") else arr, dtype=np.float32)
        arr = resize_axis(arr, 0, coords, orders[0])
        for axis in (1, 2):
            if arr.shape[axis] != out_shape[axis]:
                arr = resize_axis(arr, axis, grid_coords(arr.shape[axis], out_shape[axis]), orders[axis])
        out[c] = arr
    return out


def _torch_slab(probs, in_range, coords, out_shape, orders) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    x = probs[:, in_range[0]:in_range[1]]
    x = x.to(torch.float32) if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, np.float32))
    x = x.transpose(0, 1)  # (slices, K, Y, X): slices as batch
    if tuple(x.shape[2:]) != tuple(out_shape[1:]):
        x = F.interpolate(x, size=tuple(out_shape[1:]), mode="bilinear", align_corners=False)
    taps = kernel_taps(coords, x.shape[0], orders[0])
    idx0 = torch.as_tensor(taps[0][0], device=x.device)
    out = x.index_select(0, idx0)
    if taps[0][1] is not None:
        shape = (-1, 1, 1, 1)
        out = out * torch.as_tensor(taps[0][1], dtype=torch.float32, device=x.device).view(shape)
        for idx, w in taps[1:]:
            sel = x.index_select(0, torch.as_tensor(idx, device=x.device))
            out += sel * torch.as_tensor(w, dtype=torch.float32, device=x.device).view(shape)
    return out.transpose(0, 1).cpu().numpy()


def _pick_backend(backend: str, probs: Any, orders: tuple[int, ...]) -> str:
    if backend == "torch" and (orders[1] != 1 or orders[2] != 1):
        return "numpy"  # the torch path does in-plane bilinear only
    if backend != "auto":
        return backend
    on_device = getattr(probs, "device", None) is not None and getattr(probs.device, "type", "cpu") != "cpu"
    return "torch" if on_device and orders[1] == orders[2] == 1 else "numpy"


def iter_resampled(probs: Any, out_shape: tuple[int, ...], spacing, new_spacing, threshold: float = 3.0,
                   backend: str = "auto"):
    """Yield (output slab range, (K, slab, Y, X) float32) of ``probs`` resampled to ``out_shape``."""
    orders = axis_orders(3, 1, separate_z_axis(spacing, new_spacing, threshold))
    if tuple(probs.shape[1:]) == tuple(out_shape):
        orders = (0, 0, 0)  # identity: the gather copies slices
    backend = _pick_backend(backend, probs, orders)
    slab_fn = _torch_slab if backend == "torch" else _numpy_slab
    per_slice = probs.shape[0] * int(np.prod(out_shape[1:])) * 4
    for out_range, in_range, coords in _slabs(probs.shape[1], out_shape[0], orders[0], per_slice):
        yield out_range, slab_fn(probs, in_range, coords, out_shape, orders)


def _geometry_and_spacings(properties: dict, plans: dict):
    geometry = Geometry.from_json(properties["geometry"])
    threshold = float(plans.get("anisotropy_threshold", 3))
    return geometry, properties["target_spacing"], properties["spacing"], threshold


def _check_shape(probs: Any, properties: dict) -> None:
    expected = tuple(properties["shape_after_resampling"])
    if probs.ndim != 4 or tuple(probs.shape[1:]) != expected:
        raise ValueError(f"probabilities {tuple(probs.shape)} do not match the case's shape {expected}")


def _paste_slices(properties: dict) -> tuple[slice, ...]:
    return tuple(slice(a, b) for a, b in properties["bbox"])


def _to_original_ndim(array: np.ndarray, geometry: Geometry, lead: int, properties: dict) -> np.ndarray:
    """Working axes back to the input's order; drop the singleton z added for 2D input images."""
    array = array_to_input(array, properties.get("transpose_forward", IDENTITY), lead)
    if geometry.ndim == 2:
        return array.reshape(array.shape[:lead] + array.shape[lead + 1:])
    return array


def resample_probabilities_to_original(probabilities: Any, properties: dict, plans: dict, config: str,
                                       backend: str = "auto", labels: LabelSpec | None = None) -> np.ndarray:
    """(C, z, y, x) float32 probabilities on the original, uncropped grid in the input's axis order.

    Outside the crop box: background 1 for classes, every region 0 (``labels``; without it channel 0
    is taken for background). ``config`` is accepted for the signature of
    docs/interfaces.md "Python API"; the spacings come from ``properties``.
    """
    _check_shape(probabilities, properties)
    geometry, spacing, new_spacing, threshold = _geometry_and_spacings(properties, plans)
    k = probabilities.shape[0]
    full = np.zeros((k, *properties["shape_before_crop"]), dtype=np.float32)
    if labels is None:
        full[0] = 1.0
    else:
        full[:] = labels.outside_probabilities().reshape((k,) + (1,) * (full.ndim - 1))
    box = _paste_slices(properties)
    inner = full[(slice(None), *box)]
    for (o0, o1), slab in iter_resampled(probabilities, tuple(properties["shape_after_crop"]), spacing,
                                         new_spacing, threshold, backend):
        inner[:, o0:o1] = slab
    return _to_original_ndim(full, geometry, 1, properties)


def _label_model(plans: dict, labels: LabelSpec | Sequence[int] | None, k: int) -> LabelSpec:
    """The label model of the export: given, or a plain list of channel label values, or the plan's labels."""
    if isinstance(labels, LabelSpec):
        spec = labels
    elif labels is not None:
        values = [int(v) for v in labels]
        spec = label_spec({"background": 0, **{f"label {v}": v for v in values if v != 0}})
        if [0, *sorted(v for v in values if v != 0)] != values:
            raise ValueError(f"channel label values {values} must be 0 then ascending")
    else:
        spec = label_spec(plans["labels"], plans.get("regions_class_order"))
    if spec.num_outputs != k:
        raise ValueError(f"{k} probability channels but the label model has {spec.num_outputs} outputs "
                         f"(label values {list(spec.all_labels)})")
    return spec


def _segmentation_path(out_path: Path, file_ending: str) -> Path:
    out_path = Path(out_path)
    return out_path if out_path.name.endswith(file_ending) else out_path.with_name(out_path.name + file_ending)


def export_prediction(probabilities: Any, properties: dict, plans: dict, config: str, out_path: Path,
                      file_ending: str, save_probabilities: bool = False,
                      labels: LabelSpec | Sequence[int] | None = None, backend: str = "auto",
                      postprocess: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Write the segmentation ``out_path`` (+ ``<case>.npz`` with ``probabilities`` when asked).

    ``out_path`` may carry ``file_ending`` or not; ``labels`` is the label model (a
    :class:`LabelSpec`, or the label value of each softmax channel; default: the plan's ``labels``
    and ``regions_class_order``). ``postprocess`` maps the label
    volume before its one atomic write, so no un-postprocessed file ever lies at ``out_path``
    (a resumed ``segkit predict`` skips cases whose output exists).
    """
    _check_shape(probabilities, properties)
    spec = _label_model(plans, labels, probabilities.shape[0])
    seg_path = _segmentation_path(out_path, file_ending)
    geometry = Geometry.from_json(properties["geometry"])
    if save_probabilities:
        full = resample_probabilities_to_original(probabilities, properties, plans, config, backend, spec)
        seg = spec.probabilities_to_seg(full)
        npz = seg_path.with_name(seg_path.name[: -len(file_ending)] + ".npz")
        with atomic_write_path(npz, suffix=".npz") as tmp:
            np.savez_compressed(tmp, probabilities=full)
        del full
    else:
        _, spacing, new_spacing, threshold = _geometry_and_spacings(properties, plans)
        seg = np.zeros(properties["shape_before_crop"], dtype=np.uint8 if max(spec.all_labels) < 256 else np.uint16)
        inner = seg[_paste_slices(properties)]
        for (o0, o1), slab in iter_resampled(probabilities, tuple(properties["shape_after_crop"]), spacing,
                                             new_spacing, threshold, backend):
            inner[o0:o1] = spec.probabilities_to_seg(slab)
        seg = _to_original_ndim(seg, geometry, 0, properties)
    if postprocess is not None:
        seg = postprocess(seg)
    write_image(seg, geometry, seg_path)
