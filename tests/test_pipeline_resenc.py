"""The residual-encoder U-Net through every command: run (2d and 3d_fullres, two folds, selection),
checkpoints, export, and prediction from the bundle, on a tiny phantom (CPU, a few minutes).

plans.json is edited after `segkit plan` the way a preset writes it (the `architecture` key per
configuration; `segkit run` keeps an existing plans.json). Features are shrunk to 8 doubling per stage
so the CPU time stays small; the block counts are ResEnc M's (1, 3, 4, 6, ...) with one decoder conv
per stage.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from phantom_helpers import tiny_phantom_two_folds

from toolkit.cli import cli
from toolkit.io.images import read_image
from toolkit.network.architecture import UNetSpec

RUN = ["--epochs", "1", "--iters-per-epoch", "12", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
       "-j", "1"]
BLOCKS = [1, 3, 4, 6, 6, 6, 6, 6]


def _resenc_plans(plans_path):
    plans = json.loads(plans_path.read_text(encoding="utf-8"))
    for c in plans["configurations"].values():
        n = len(c["conv_kernel_sizes"])
        c["features_per_stage"] = [8 * 2**i for i in range(n)]
        c["architecture"] = {"name": "residual_encoder_unet", "n_blocks_per_stage": BLOCKS[:n],
                             "n_conv_per_stage_decoder": [1] * (n - 1)}
    plans_path.write_text(json.dumps(plans, indent=2), encoding="utf-8")
    return plans


@pytest.mark.slow
def test_resenc_run_export_predict(tmp_path):
    ds, work = tiny_phantom_two_folds(tmp_path / "raw"), tmp_path / "work"
    runner = CliRunner()
    result = runner.invoke(cli, ["plan", str(ds), "--work", str(work)])
    assert result.exit_code == 0, result.output
    plans = _resenc_plans(work / ds.name / "plans.json")
    assert set(plans["configurations"]) == {"2d", "3d_fullres"}

    result = runner.invoke(cli, ["run", str(ds), "--work", str(work), *RUN])
    assert result.exit_code == 0, result.output
    models = work / ds.name / "models"
    for config, plan in plans["configurations"].items():
        expected = UNetSpec.from_plan(plan, in_channels=1, num_classes=3)
        for fold in (0, 1):
            ckpt = torch.load(models / config / f"fold_{fold}" / "checkpoint_final.pt", map_location="cpu",
                              weights_only=True)
            assert ckpt["spec"]["architecture"] == "residual_encoder_unet"
            assert UNetSpec.from_fields(ckpt["spec"]) == expected
            weights = ckpt["network_weights"]
            assert "stem.0.weight" in weights and "encoder.3.5.conv2.0.weight" in weights
            assert sum(w.numel() for w in weights.values()) == expected.num_parameters()

    bundle, out = tmp_path / "bundle", tmp_path / "pred"
    result = runner.invoke(cli, ["export", str(ds), "--work", str(work), "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["predict", "-m", str(bundle), "-i", str(ds / "imagesTs"), "-o", str(out),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    found = set()
    for img in sorted((ds / "imagesTs").glob("*_0000.nii.gz")):
        case = img.name[: -len("_0000.nii.gz")]
        pred, geo = read_image(out / f"{case}.nii.gz")
        ref, ref_geo = read_image(img)
        assert pred.shape == ref.shape and geo == ref_geo
        truth, _ = read_image(ds / "labelsTs" / f"{case}.nii.gz")
        assert set(np.unique(pred)) <= {0, 1, 2}
        found |= set(np.unique(pred[truth > 0]).tolist())
    assert found - {0}, "the trained ResEnc predicts no foreground inside the reference objects"
