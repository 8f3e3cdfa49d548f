"""Pairwise ensembles of cross-validation predictions from their saved probabilities.

Each fold's validation saved ``<case>.npz`` with ``probabilities`` (K, z, y, x) already in the
original image grid, so an ensemble is an average, an argmax and a label lookup per case; no model
runs again. Channel i maps to label value ``[0] + sorted foreground labels`` (docs/interfaces.md "plans.json").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def probabilities_to_labels(probabilities: np.ndarray, label_values: list[int]) -> np.ndarray:
    """Argmax over channels, mapped to label values (uint8 when they fit, else int16)."""
    if probabilities.shape[0] != len(label_values):
        raise ValueError(f"{probabilities.shape[0]} probability channels for {len(label_values)} labels")
    lut = np.asarray(label_values, dtype=np.uint8 if max(label_values) < 256 else np.int16)
    return lut[np.argmax(probabilities, axis=0)]


def ensemble_case(task: tuple) -> None:
    """Average the members' probabilities of one case and write the label map.

    ``task`` = (list of .npz paths, label file giving the geometry, output path, label values).
    """
    npz_paths, geometry_from, out_path, label_values = task
    shape, geometry = read_geometry(geometry_from)
    total = None
    for path in npz_paths:
        probs = load_probabilities(path)
        if probs.shape[1:] != tuple(shape):
            raise SegkitError(f"probabilities of shape {probs.shape[1:]} do not match the prediction's {shape}",
                              path)
        total = probs if total is None else total + probs
    write_image(probabilities_to_labels(total / len(npz_paths), label_values), geometry, out_path)


def build_ensemble(members: list[dict[str, Path]], geometry_files: dict[str, Path], folder: Path,
                   file_ending: str, label_values: list[int], workers: int = 1) -> dict[str, Path]:
    """Write the ensemble of ``members`` (each case -> .npz) for their common cases into ``folder``.

    Returns case -> written label file. Files of cases outside the common set are removed.
    """
    cases = sorted(set.intersection(*(set(m) for m in members)))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"*{file_ending}"):
        if stale.name[: -len(file_ending)] not in cases:
            stale.unlink()
    out = {c: folder / f"{c}{file_ending}" for c in cases}
    tasks = [([m[c] for m in members], geometry_files[c], out[c], label_values) for c in cases]
    parallel_map(ensemble_case, tasks, workers, f"ensemble {folder.name}")
    return out
