"""Pairwise ensembles of cross-validation predictions from their saved probabilities.

Each fold's validation saved ``<case>.npz`` with ``probabilities`` (C, z, y, x) already in the
original image grid (softmax per class, or sigmoid per region for a region dataset), so an ensemble is
an average and the label model's :meth:`~toolkit.dataset.labels.LabelSpec.probabilities_to_seg` (argmax
mapped to label values, or regions thresholded at 0.5 painted in ``regions_class_order``) per case;
no model runs again. This is nnU-Net v2's ensembling: averaged probabilities, not logits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.dataset.labels import LabelSpec
from toolkit.errors import SegkitError
from toolkit.evaluation.parallel import parallel_map
from toolkit.io.images import read_geometry, write_image


def load_probabilities(path: Path) -> np.ndarray:
    """The ``probabilities`` array of a validation ``.npz`` as float32."""
    try:
        with np.load(path) as data:
            return data["probabilities"].astype(np.float32, copy=False)
    except (OSError, ValueError, KeyError) as exc:
        raise SegkitError(f"unreadable probabilities ({type(exc).__name__}: {exc})", path) from None


def ensemble_case(task: tuple) -> None:
    """Average the members' probabilities of one case and write the label map.

    ``task`` = (list of .npz paths, label file giving the geometry, output path, label model).
    """
    npz_paths, geometry_from, out_path, labels = task
    shape, geometry = read_geometry(geometry_from)
    total = None
    for path in npz_paths:
        probs = load_probabilities(path)
        if probs.shape[1:] != tuple(shape) or probs.shape[0] != labels.num_outputs:
            raise SegkitError(f"probabilities of shape {probs.shape} do not match the prediction's "
                              f"({labels.num_outputs}, *{tuple(shape)})", path)
        total = probs if total is None else total + probs
    write_image(labels.probabilities_to_seg(total / len(npz_paths)), geometry, out_path)


def build_ensemble(members: list[dict[str, Path]], geometry_files: dict[str, Path], folder: Path,
                   file_ending: str, labels: LabelSpec, workers: int = 1) -> dict[str, Path]:
    """Write the ensemble of ``members`` (each case -> .npz) for their common cases into ``folder``.

    Returns case -> written label file. Files of cases outside the common set are removed.
    """
    cases = sorted(set.intersection(*(set(m) for m in members)))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"*{file_ending}"):
        if stale.name[: -len(file_ending)] not in cases:
            stale.unlink()
    out = {c: folder / f"{c}{file_ending}" for c in cases}
    tasks = [([m[c] for m in members], geometry_files[c], out[c], labels) for c in cases]
    parallel_map(ensemble_case, tasks, workers, f"ensemble {folder.name}")
    return out
