"""The network description in checkpoints and plans: architecture fields flow through, and files from
before they existed (no ``architecture`` in the spec or the plan) still load as the plain U-Net."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from toolkit.errors import SegkitError
from toolkit.inference.model_folder import load_network
from toolkit.network.architecture import UNetSpec
from toolkit.network.resenc import ResidualEncoderUNet
from toolkit.network.unet import UNet, build_network
from toolkit.planning.table import format_plans_table
from toolkit.training import checkpoint as ckpt
from toolkit.training.setup import resolve_training

PLAN = {"patch_size": [16, 16, 16], "conv_kernel_sizes": [[3, 3, 3]] * 3, "pool_strides": [[2, 2, 2]] * 2,
        "features_per_stage": [4, 8, 16]}
RESENC = dict(PLAN, architecture={"name": "residual_encoder_unet", "n_blocks_per_stage": [1, 2, 2],
                                  "n_conv_per_stage_decoder": [1, 1]})
OLD_KEYS = ("architecture", "n_blocks_per_stage", "n_conv_per_stage_decoder")


def _save(path: Path, net: torch.nn.Module, spec_dict: dict) -> Path:
    torch.save({"network_weights": net.state_dict(), "spec": spec_dict, "options": {}, "config": "3d_fullres"}, path)
    return path


def test_checkpoint_without_architecture_fields_loads_as_plain_unet(tmp_path):
    spec = UNetSpec.from_plan(PLAN, 1, 3)
    old = {k: v for k, v in ckpt.spec_to_dict(spec).items() if k not in OLD_KEYS}  # a pre-ResEnc checkpoint
    net = build_network(spec)
    network, _, loaded = load_network(_save(tmp_path / "old.pt", net, old), "cpu")
    assert isinstance(network, UNet) and loaded == spec and loaded.architecture == "plain_unet"
    x = torch.randn(1, 1, 16, 16, 16)
    net.deep_supervision = False
    with torch.no_grad():
        assert torch.equal(network(x), net.eval()(x))


def test_resenc_checkpoint_round_trip(tmp_path):
    spec = UNetSpec.from_plan(RESENC, 1, 3)
    fields = ckpt.spec_to_dict(spec)
    assert fields["architecture"] == "residual_encoder_unet" and fields["n_blocks_per_stage"] == [1, 2, 2]
    net = build_network(spec)
    path = tmp_path / "resenc.pt"
    _save(path, net, fields)
    network, _, loaded = load_network(path, "cpu")  # weights_only=True inside
    assert isinstance(network, ResidualEncoderUNet) and loaded == spec and not network.deep_supervision
    with torch.no_grad():
        assert tuple(network(torch.randn(1, 1, 16, 16, 16)).shape) == (1, 3, 16, 16, 16)


def test_checkpoint_with_unknown_architecture_is_a_one_line_error(tmp_path):
    spec = UNetSpec.from_plan(PLAN, 1, 3)
    path = _save(tmp_path / "future.pt", build_network(spec), dict(ckpt.spec_to_dict(spec), architecture="mednext"))
    with pytest.raises(SegkitError, match="unknown architecture 'mednext'") as err:
        load_network(path, "cpu")
    assert str(path) in str(err.value)


def test_resume_compares_networks_not_dict_layouts():
    plain = UNetSpec.from_plan(PLAN, 1, 3)
    old = {k: v for k, v in ckpt.spec_to_dict(plain).items() if k not in OLD_KEYS}
    assert ckpt.same_spec(old, plain)  # a checkpoint_latest.pt from before the fields resumes
    assert not ckpt.same_spec(old, UNetSpec.from_plan(RESENC, 1, 3))
    assert not ckpt.same_spec(ckpt.spec_to_dict(plain), UNetSpec.from_plan(RESENC, 1, 3))
    assert not ckpt.same_spec(None, plain)


def test_training_refuses_a_plan_with_an_unbuildable_network(tmp_path):
    ds, work = tmp_path / "Dataset001_X", tmp_path / "work"
    ds.mkdir()
    plans = work / ds.name / "plans.json"
    plans.parent.mkdir(parents=True)
    bad = dict(PLAN, architecture={"name": "residual_encoder_unet", "n_blocks_per_stage": [1, 2]})
    plans.write_text(json.dumps({"configurations": {"3d_fullres": bad}}), encoding="utf-8")
    with pytest.raises(SegkitError, match="n_blocks_per_stage must list 3") as err:
        resolve_training(ds, work, "3d_fullres", 0)
    assert "plans.json" in str(err.value)


def test_plans_table_names_the_network():
    row = {"spacing": [1, 1, 1], "median_shape": [16, 16, 16], "batch_size": 2, "num_pool_per_axis": [2, 2, 2],
           "normalization": ["zscore"], "use_mask_for_norm": [False]}
    table = format_plans_table({"configurations": {"old": dict(PLAN, **row), "new": dict(RESENC, **row)}})
    line = next(t for t in table.splitlines() if t.startswith("network"))
    assert "plain (2 convs per stage)" in line and "residual encoder blocks 1-2-2 decoder 1-1" in line
