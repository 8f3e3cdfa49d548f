"""Cascade at predict time with tiny models: the low-res stage runs first and its upsampled one-hot
argmax reaches the full-res network as extra channels; plus the hand-over helpers."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from tests.test_inference_predictor import _save_checkpoint, _spec, _tiny_plan
from toolkit.inference.cascade import load_previous_stage, previous_stage_onehot, save_next_stage
from toolkit.inference.pipeline import predict_folder
from toolkit.inference.predictor import Predictor
from toolkit.io.images import read_image
from toolkit.network.unet import build_network


class EchoPrevious(nn.Module):
    """Cascade stand-in: logits = 20 x the previous-stage one-hot channels (image channel ignored)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 4
        return 20 * x[:, 1:]


def test_previous_stage_onehot_numpy_and_torch():
    rng = np.random.default_rng(0)
    probs = rng.random((3, 4, 5, 6)).astype(np.float32)
    onehot = previous_stage_onehot(probs, (8, 10, 12))
    assert isinstance(onehot, np.ndarray) and onehot.shape == (3, 8, 10, 12)
    assert set(np.unique(onehot)) == {0.0, 1.0} and np.all(onehot.sum(0) == 1)
    same = previous_stage_onehot(probs, (4, 5, 6))
    assert np.array_equal(same.argmax(0), probs.argmax(0))
    assert torch.equal(previous_stage_onehot(torch.from_numpy(probs), (8, 10, 12)), torch.from_numpy(onehot))


def test_next_stage_roundtrip(tmp_path):
    probs = np.zeros((3, 4, 4, 4), dtype=np.float32)
    probs[2] = 1
    save_next_stage(tmp_path / "models" / "3d_lowres" / "fold_1", "c1", probs)
    onehot = load_previous_stage(tmp_path / "models" / "3d_lowres", "c1", (8, 8, 8))
    assert onehot.shape == (3, 8, 8, 8) and np.all(onehot[2] == 1)


@pytest.fixture
def cascade_models(phantom_dataset, tmp_path):
    torch.set_num_threads(1)
    root = tmp_path / "work" / phantom_dataset.name
    fullres = _tiny_plan({"spacing": [2.5, 0.9, 0.9], "normalization": ["zscore"], "use_mask_for_norm": [True],
                          "data_identifier": "3d_fullres"})
    lowres = copy.deepcopy(fullres) | {"spacing": [2.5, 1.6, 1.6], "data_identifier": "3d_lowres"}
    cascade = copy.deepcopy(fullres) | {"previous_stage": "3d_lowres"}
    plans = {"dataset_name": phantom_dataset.name, "transpose_forward": [0, 1, 2], "anisotropy_threshold": 3,
             "configurations": {"3d_fullres": fullres, "3d_lowres": lowres, "3d_cascade_fullres": cascade}}
    for config, spec in (("3d_lowres", _spec(1)), ("3d_cascade_fullres", _spec(4))):
        model = root / "models" / config
        model.mkdir(parents=True)
        (model / "plans.json").write_text(json.dumps(plans))
        shutil.copy(phantom_dataset / "dataset.json", model / "dataset.json")
        torch.manual_seed(0)
        _save_checkpoint(build_network(spec), spec, model / "fold_0" / "checkpoint_final.pt", config)
    return root / "models"


def test_cascade_runs_lowres_first_and_feeds_its_argmax(cascade_models, phantom_dataset):
    predictor = Predictor.from_model_folder(cascade_models / "3d_cascade_fullres", None, "cpu", tta=True)
    assert predictor.previous is not None and predictor.previous.model.config == "3d_lowres"
    predictor.networks = [EchoPrevious()]
    image = sorted((phantom_dataset / "imagesTs").iterdir())[0]
    case = predictor.preprocess("c", [image])
    assert case.previous is not None and case.previous.data.shape[2] < case.data.shape[2]
    low = predictor.previous.predict(case.previous)
    assert len(torch.unique(low.argmax(0))) > 1  # the random low-res net is not constant: the test can fail
    expected = previous_stage_onehot(low, case.data.shape[1:]).argmax(0)
    assert torch.equal(predictor.predict(case).argmax(0), expected)


def test_cascade_predict_folder_geometry(cascade_models, phantom_dataset, tmp_path):
    predictor = Predictor.from_model_folder(cascade_models / "3d_cascade_fullres", [0], "cpu", tta=False)
    report = predict_folder(predictor, phantom_dataset / "imagesTs", tmp_path / "out", 1, progress=False)
    assert len(report.predicted) == 2 and not report.failed
    for case in report.predicted:
        seg, geo = read_image(tmp_path / "out" / f"{case}.nii.gz")
        img, img_geo = read_image(phantom_dataset / "imagesTs" / f"{case}_0000.nii.gz")
        assert seg.shape == img.shape and geo == img_geo
