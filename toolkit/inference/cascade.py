"""The cascade's hand-over from the low-res stage to the full-res stage (docs/method.md 1.3 "3D cascade").

The low-res and full-res stages preprocess the same cropped region (cropping happens before
resampling), so the low-res probabilities on the low-res preprocessed grid map onto the full-res
preprocessed grid by resampling alone: trilinear upsampling of the probabilities to the full-res shape,
the label map (argmax, or for a region dataset the regions thresholded at 0.5 and painted in
``regions_class_order``), one-hot over every label value with background included
(``len(LabelSpec.all_labels)`` extra input channels; the same as the argmax one-hot for plain classes).

Training and prediction must build this input identically, so both use :func:`previous_stage_onehot`:
- at the end of training, each 3d_lowres fold saves its validation cases' probabilities on the low-res
  preprocessed grid as ``fold_<k>/validation/next_stage/<case>.npz`` (key ``probabilities``, float16);
  the cascade trainer reads them with :func:`load_previous_stage` (each training case is a validation
  case of exactly one low-res fold, so all low-res folds must be trained first, as in nnU-Net);
- ``segkit predict`` on a cascade model runs the low-res predictor first (:class:`Predictor` does it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.dataset.labels import LabelSpec, dataset_label_spec
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_path, read_json

NEXT_STAGE_DIR = "next_stage"


def previous_stage_onehot(probabilities, target_shape: Sequence[int], labels: LabelSpec | None = None):
    """(C, z, y, x) low-res probabilities -> (L, *target_shape) float32 one-hot of the upsampled label map.

    ``L = len(labels.all_labels)``; without ``labels`` (or for plain classes) the channels are the
    classes and the map is their argmax. Accepts numpy or torch; returns the same kind (torch stays
    on its device).
    """
    import torch
    import torch.nn.functional as F

    is_numpy = isinstance(probabilities, np.ndarray)
    probs = torch.from_numpy(probabilities) if is_numpy else probabilities
    target = tuple(int(s) for s in target_shape)
    if tuple(probs.shape[1:]) != target:
        probs = F.interpolate(probs[None].float(), size=target, mode="trilinear", align_corners=False)[0]
    if labels is not None and labels.has_regions:
        if probs.shape[0] != labels.num_outputs:
            raise ValueError(f"{probs.shape[0]} previous-stage channels but {labels.num_outputs} regions")
        k = len(labels.all_labels)
        seg = torch.zeros(target, dtype=torch.long, device=probs.device)
        for channel, value in zip(probs, labels.regions_class_order, strict=True):
            seg[channel > 0.5] = labels.all_labels.index(value)
    else:
        k = probs.shape[0]
        seg = probs.argmax(0)
    onehot = torch.zeros((k, *target), dtype=torch.float32, device=probs.device)
    onehot.scatter_(0, seg[None], 1.0)
    return onehot.numpy() if is_numpy else onehot


def next_stage_path(fold_dir: Path, case_id: str) -> Path:
    return Path(fold_dir) / "validation" / NEXT_STAGE_DIR / f"{case_id}.npz"


def save_next_stage(fold_dir: Path, case_id: str, probabilities: np.ndarray) -> None:
    """Low-res probabilities on the low-res preprocessed grid, for the cascade trainer (atomic)."""
    with atomic_write_path(next_stage_path(fold_dir, case_id), suffix=".npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, probabilities=np.asarray(probabilities, dtype=np.float16))


def load_previous_stage(lowres_model_root: Path, case_id: str, target_shape: Sequence[int]) -> np.ndarray:
    """The one-hot previous-stage input of a training case, from whichever low-res fold validated it
    (label model from the low-res model folder's ``dataset.json``)."""
    hits = sorted(Path(lowres_model_root).glob(f"fold_*/validation/{NEXT_STAGE_DIR}/{case_id}.npz"))
    if not hits:
        raise SegkitError(f"no low-res validation prediction for case {case_id!r}; train and validate every "
                          "3d_lowres fold before the cascade", lowres_model_root)
    with np.load(hits[0]) as z:
        probs = z["probabilities"].astype(np.float32)
    ds_path = Path(lowres_model_root) / "dataset.json"
    labels = dataset_label_spec(read_json(ds_path), ds_path) if ds_path.is_file() else None
    return previous_stage_onehot(probs, target_shape, labels)
