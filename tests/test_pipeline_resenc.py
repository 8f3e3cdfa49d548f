"""`segkit run --preset resenc-m` end to end on a tiny phantom: the real preset plans the residual-encoder
U-Net, the run trains it (3d_fullres, two folds, selection), then export, `segkit predict` from the bundle
and `segkit report` (CPU; a few minutes, most of it the real ResEnc M width of 32..256 features).

Only 3d_fullres is trained and only for 2 iterations per fold: the test checks that the ResEnc network
goes through every command (plans, checkpoints, bundle, prediction geometry, report), not how well it
learns (tests/test_learning_hippocampus.py checks learning on real data).
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

RUN = ["--epochs", "1", "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
       "-j", "1"]
# nnunetv2 2.8.1 nnUNetPlannerResEncM (ResEncUNetPlanner): residual blocks per encoder stage, one conv per
# decoder stage; written here from nnU-Net's source, not read from toolkit/planning/presets.yaml
NNUNET_BLOCKS = [1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6]


def _check_plans(plans: dict) -> None:
    assert plans["preset"] == "resenc-m"
    assert set(plans["configurations"]) == {"2d", "3d_fullres"}
    for config, plan in plans["configurations"].items():
        n = len(plan["conv_kernel_sizes"])
        assert plan["architecture"] == {"name": "residual_encoder_unet", "n_blocks_per_stage": NNUNET_BLOCKS[:n],
                                        "n_conv_per_stage_decoder": [1] * (n - 1)}, config
        assert plan["features_per_stage"] == [min(32 * 2**i, 320) for i in range(n)], config


def _check_checkpoints(models, plan: dict) -> None:
    expected = UNetSpec.from_plan(plan, in_channels=1, num_classes=3)
    for fold in (0, 1):
        ckpt = torch.load(models / "3d_fullres" / f"fold_{fold}" / "checkpoint_final.pt", map_location="cpu",
                          weights_only=True)
        assert ckpt["spec"]["architecture"] == "residual_encoder_unet"
        assert UNetSpec.from_fields(ckpt["spec"]) == expected
        weights = ckpt["network_weights"]
        assert "stem.0.weight" in weights and "encoder.3.5.conv2.0.weight" in weights  # 6 blocks at stage 3
        assert sum(w.numel() for w in weights.values()) == expected.num_parameters()


@pytest.mark.slow
def test_run_preset_resenc_m_export_predict_report(tmp_path):
    ds, work = tiny_phantom_two_folds(tmp_path / "raw"), tmp_path / "work"
    runner = CliRunner()
    result = runner.invoke(cli, ["run", str(ds), "--work", str(work), "--preset", "resenc-m", "-c", "3d_fullres",
                                 *RUN])
    assert result.exit_code == 0, result.output
    assert "residual encoder blocks 1-3-4-6" in result.output  # the plans table of the run
    wd = work / ds.name
    plans = json.loads((wd / "plans.json").read_text(encoding="utf-8"))
    _check_plans(plans)
    _check_checkpoints(wd / "models", plans["configurations"]["3d_fullres"])
    selection = json.loads((wd / "selection.json").read_text(encoding="utf-8"))
    assert selection["winner"]["configurations"] == ["3d_fullres"]

    bundle, out = tmp_path / "bundle", tmp_path / "pred"
    result = runner.invoke(cli, ["export", str(ds), "--work", str(work), "-o", str(bundle)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["predict", "-m", str(bundle), "-i", str(ds / "imagesTs"), "-o", str(out),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    inside = outside = 0.0
    for img in sorted((ds / "imagesTs").glob("*_0000.nii.gz")):
        case = img.name[: -len("_0000.nii.gz")]
        pred, geo = read_image(out / f"{case}.nii.gz")
        ref, ref_geo = read_image(img)
        assert pred.shape == ref.shape and geo == ref_geo
        truth, _ = read_image(ds / "labelsTs" / f"{case}.nii.gz")
        assert set(np.unique(pred)) <= {0, 1, 2}
        inside += float(np.mean(pred[truth > 0] > 0))
        outside += float(np.mean(pred[truth == 0] > 0))
    # foreground inside the reference objects, and more often there than in the background
    assert inside > 0 and inside > outside, (inside, outside)

    result = runner.invoke(cli, ["report", str(ds), "--work", str(work)])
    assert result.exit_code == 0, result.output
    page = (wd / "report" / "index.html").read_text(encoding="utf-8")
    assert "residual encoder blocks 1-3-4-6 decoder 1-1-1" in page
