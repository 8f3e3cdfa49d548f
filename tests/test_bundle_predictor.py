"""A bundle's postprocessing is applied before the one atomic write of the label file.

`segkit predict` skips cases whose output exists, so a run killed between writing the raw
segmentation and postprocessing it must not leave the raw file at the final path.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from bundle_helpers import CONFIG, make_tiny_bundle

from toolkit.bundle.predictor import BundleCase, BundlePredictor
from toolkit.dataset.labels import label_spec
from toolkit.inference.pipeline import predict_folder
from toolkit.io.images import read_image
from toolkit.postprocessing.rules import apply_postprocessing
from toolkit.preprocessing.export import resample_probabilities_to_original

DECISION = {"keep_largest_foreground": True, "foreground_labels": [1, 2], "keep_largest_per_class": []}
CASE = "phantom_008"


def _two_components(shape: tuple[int, ...], num_classes: int) -> torch.Tensor:
    """Probabilities (K, z, y, x): a large label-1 block and a small, separate label-1 block."""
    probs = torch.zeros((num_classes, *shape), dtype=torch.float32)
    probs[0] = 1.0
    z, y, x = (s // 2 for s in shape)
    for box in ((slice(z - 4, z + 4), slice(y - 8, y + 8), slice(x - 8, x + 8)),
                (slice(0, 4), slice(0, 5), slice(0, 5))):
        probs[(0, *box)] = 0.0
        probs[(1, *box)] = 1.0
    return probs


def test_killed_before_postprocessing_leaves_no_output_and_a_rerun_postprocesses(phantom_dataset, tmp_path,
                                                                                   monkeypatch):
    predictor = BundlePredictor.from_bundle(make_tiny_bundle(phantom_dataset, tmp_path, postprocessing=DECISION),
                                            "cpu", tta=False)
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    shutil.copy(phantom_dataset / "imagesTs" / f"{CASE}_0000.nii.gz", in_dir)
    case = predictor.preprocess(CASE, [in_dir / f"{CASE}_0000.nii.gz"])
    probs = _two_components(case.parts[CONFIG].data.shape[1:], predictor.label_spec.num_outputs)
    monkeypatch.setattr(predictor, "predict", lambda _case: {CONFIG: probs})

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # the process dies here, between the raw label map and its postprocessing

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr("toolkit.bundle.predictor.apply_postprocessing", killed)
        predictor.export(predictor.predict(case), case, out_dir / f"{CASE}.nii.gz")
    assert not (out_dir / f"{CASE}.nii.gz").exists()
    assert not out_dir.exists() or not any(out_dir.iterdir())

    report = predict_folder(predictor, in_dir, out_dir, 1, progress=False)
    assert report.predicted == [CASE] and not report.skipped and not report.failed
    predictor.first.export(probs, case.parts[CONFIG], tmp_path / "raw" / CASE)  # no postprocessing
    raw, _ = read_image(tmp_path / "raw" / f"{CASE}.nii.gz")
    expected = apply_postprocessing(raw, DECISION)
    assert not np.array_equal(raw, expected), "the decision must change this prediction"
    got, _ = read_image(out_dir / f"{CASE}.nii.gz")
    assert np.array_equal(got, expected)


def test_ensemble_of_a_region_bundle_averages_sigmoids_then_paints_regions(phantom_dataset, tmp_path):
    """Two configurations of a region model: their sigmoid probabilities are averaged on the original
    grid (zero outside the crop box, not background 1) and the mean is thresholded per region."""
    single = BundlePredictor.from_bundle(make_tiny_bundle(phantom_dataset, tmp_path), "cpu", tta=False)
    predictor = single.first
    predictor.label_spec = label_spec({"background": 0, "whole": [1, 2], "lesion": 2}, [1, 2])
    bundle = BundlePredictor(tmp_path, {"a": predictor, "b": predictor}, {"keep_largest_per_class": []})
    part = predictor.preprocess(CASE, [phantom_dataset / "imagesTs" / f"{CASE}_0000.nii.gz"])
    shape = part.data.shape[1:]
    pa, pb = torch.zeros((2, *shape)), torch.zeros((2, *shape))
    z, y, x = (s // 2 for s in shape)
    big = (slice(z - 4, z + 4), slice(y - 8, y + 8), slice(x - 8, x + 8))
    small = (slice(z - 2, z + 2), *big[1:])
    pa[(0, *big)], pb[(0, *big)] = 0.9, 0.3        # whole: mean 0.6 -> painted 1
    pa[(1, *big)], pb[(1, *big)] = 0.7, 0.2        # lesion: mean 0.45 -> not painted ...
    pa[(1, *small)], pb[(1, *small)] = 0.7, 0.4    # ... except here: mean 0.55 -> 2
    case = BundleCase(CASE, {"a": part, "b": part})
    bundle.export({"a": pa, "b": pb}, case, tmp_path / "out" / CASE, save_probabilities=True)
    got, _ = read_image(tmp_path / "out" / f"{CASE}.nii.gz")
    mean = sum(resample_probabilities_to_original(p.numpy(), part.properties, predictor.model.plans, CONFIG,
                                                  labels=predictor.label_spec) for p in (pa, pb)) / 2
    expected = np.zeros(got.shape, np.uint8)
    expected[mean[0] > 0.5] = 1
    expected[mean[1] > 0.5] = 2
    assert np.array_equal(got, expected) and set(np.unique(got)) == {0, 1, 2}
    stored = np.load(tmp_path / "out" / f"{CASE}.npz")["probabilities"]
    assert stored.shape == (2, *got.shape) and np.allclose(stored, mean)
