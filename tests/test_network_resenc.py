"""The residual-encoder U-Net: spec numbers equal nnunetv2's, and the torch module equals its spec.

tests/data/resenc_reference.json holds parameter counts and feature-map sizes that
bench/resenc_reference.py obtained from dynamic_network_architectures 0.4.4 / nnunetv2 2.8.1 for
the same arguments (rerun it to regenerate; nothing here imports the peer).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from toolkit.network.architecture import UNetSpec
from toolkit.network.resenc import ResidualBlock, ResidualEncoderUNet
from toolkit.network.unet import UNet, build_network
from toolkit.training.loss import deep_supervision_loss

REFERENCE = json.loads((Path(__file__).parent / "data" / "resenc_reference.json").read_text(encoding="utf-8"))
CASES = {c["name"]: c for c in REFERENCE["cases"]}
RESENC = sorted(n for n, c in CASES.items() if c["architecture"] == "residual_encoder_unet")
SMALL = ["resenc_small_uneven", "resenc_small_2d"]  # cheap enough to build and run here
PLAN = {  # a plans.json configuration entry with the architecture key
    "patch_size": [16, 24, 16],
    "conv_kernel_sizes": [[3, 3, 3], [3, 3, 3], [1, 3, 3], [3, 3, 3]],
    "pool_strides": [[2, 2, 2], [1, 2, 2], [2, 2, 1]],
    "features_per_stage": [4, 8, 16, 16],
    "architecture": {"name": "residual_encoder_unet", "n_blocks_per_stage": [2, 1, 2, 3],
                     "n_conv_per_stage_decoder": [2, 1, 3]},
}


def _spec(case: dict, deep_supervision: bool = True) -> UNetSpec:
    return UNetSpec.from_fields(dict(case, deep_supervision=deep_supervision))


@pytest.mark.parametrize("name", RESENC)
def test_spec_numbers_equal_dynamic_network_architectures(name):
    case = CASES[name]
    assert _spec(case).num_parameters() == case["peer_num_parameters"]
    assert _spec(case, True).feature_map_voxels(case["patch_size"]) == case["peer_feature_map_voxels"]["deep_supervision"]
    inference = _spec(case, False).feature_map_voxels(case["patch_size"])
    assert inference == case["peer_feature_map_voxels"]["no_deep_supervision"]
    assert inference == case["peer_planner_estimate"]  # what nnunetv2's planner compares with its budget


@pytest.mark.parametrize("name", ["plain_3d", "plain_2d"])
def test_plain_spec_against_nnunet_differs_only_by_the_unused_lowest_head(name):
    case = CASES[name]
    spec = _spec(case)
    lowest_head = case["features"][-2] * case["num_classes"] + case["num_classes"]
    assert spec.num_parameters() + lowest_head == case["peer_num_parameters"]
    assert _spec(case, False).feature_map_voxels(case["patch_size"]) == case["peer_planner_estimate"]


@pytest.mark.parametrize("name", SMALL)
def test_module_parameters_equal_spec_and_peer(name):
    case = CASES[name]
    for ds in (True, False):  # ResEnc builds every head whatever deep_supervision says (like nnU-Net)
        net = build_network(_spec(case, ds))
        assert isinstance(net, ResidualEncoderUNet)
        assert sum(p.numel() for p in net.parameters()) == _spec(case, ds).num_parameters()
        assert sum(p.numel() for p in net.parameters()) == case["peer_num_parameters"]


def _measured_feature_maps(net: nn.Module, spec: UNetSpec, patch: list[int]) -> int:
    """Outputs of every conv, transposed conv and head, plus each residual skip path as a whole
    (its avg-pool and 1x1 conv are one skip output), summed for one sample."""
    skips = {m.skip for m in net.modules() if isinstance(m, ResidualBlock) and isinstance(m.skip, nn.Sequential)}
    inside_skips = {id(sub) for s in skips for sub in s.modules()}
    measured = []
    for m in net.modules():
        counted = isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)) and id(m) not in inside_skips
        if counted or m in skips:
            m.register_forward_hook(lambda _m, _i, out: measured.append(out[0].numel()))
    with torch.no_grad():
        net(torch.zeros(1, spec.in_channels, *patch))
    return sum(measured)


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("ds", [True, False])
def test_feature_map_voxels_measured_with_hooks(name, ds):
    case = CASES[name]
    spec = _spec(case, ds)
    net = build_network(spec).eval()
    assert _measured_feature_maps(net, spec, case["patch_size"]) == spec.feature_map_voxels(case["patch_size"])


def test_forward_deep_supervision_heads_on_every_decoder_resolution():
    spec = UNetSpec.from_plan(PLAN, in_channels=2, num_classes=3)
    assert spec.architecture == "residual_encoder_unet" and spec.n_blocks_per_stage == (2, 1, 2, 3)
    net = build_network(spec)
    x = torch.randn(2, 2, *PLAN["patch_size"])
    outs = net(x)
    shapes = spec.stage_shapes(PLAN["patch_size"])
    assert len(outs) == spec.n_stages - 1 == len(spec.deep_supervision_weights())
    for r, out in enumerate(outs):  # highest resolution first
        assert tuple(out.shape) == (2, 3, *shapes[r])
    weights = spec.deep_supervision_weights()  # nnU-Net: 1/2^i, lowest head 0, normalised
    assert weights == pytest.approx([4 / 6, 2 / 6, 0.0])
    # every parameter takes part in the training loss (data-parallel training needs no unused ones)
    loss = deep_supervision_loss(outs, torch.randint(0, 3, (2, 1, *PLAN["patch_size"])), weights, False)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    net.deep_supervision = False
    with torch.no_grad():
        single = net(x)
    assert tuple(single.shape) == (2, 3, *PLAN["patch_size"])
    assert torch.allclose(single, outs[0].detach())


def test_layers_and_initialisation_follow_the_reference():
    spec = UNetSpec.from_plan(PLAN, in_channels=2, num_classes=3)
    net = build_network(spec)
    assert net.stem[0].in_channels == 2 and net.stem[0].out_channels == 4 and net.stem[0].stride == (1, 1, 1)
    blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == sum(spec.n_blocks_per_stage)
    first = [stage[0] for stage in net.encoder]
    assert [tuple(b.conv1[0].stride) for b in first] == [tuple(s) for s in spec.strides]
    assert all(tuple(b.conv1[0].stride) == (1, 1, 1) for stage in net.encoder for b in stage[1:])
    # skip paths: stage 1 pools and projects (4 -> 8), stage 3 only pools (16 -> 16), stage 0 is identity
    assert isinstance(first[0].skip, nn.Identity)
    assert [type(m) for m in first[1].skip] == [nn.AvgPool3d, nn.Conv3d, nn.InstanceNorm3d]
    assert first[1].skip[1].bias is None
    assert [type(m) for m in first[3].skip] == [nn.AvgPool3d]
    for b in blocks:  # the norm before the addition starts at zero: each block starts as its skip
        assert not b.conv2[1].weight.any() and not b.conv2[1].bias.any()
        assert len(b.conv2) == 2  # conv -> IN, the activation comes after the addition
    assert sorted(net.heads) == ["0", "1", "2"]
    assert [len(d) for d in net.decoder] == [2, 1, 3]  # n_conv_per_stage_decoder, lowest resolution first
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm3d)]
    assert all(m.eps == 1e-5 and m.affine for m in norms)
    assert all(a.negative_slope == 0.01 for a in net.modules() if isinstance(a, nn.LeakyReLU))


def test_plan_without_architecture_is_the_plain_unet():
    plain = {k: v for k, v in PLAN.items() if k != "architecture"}
    spec = UNetSpec.from_plan(plain, 1, 2)
    assert spec.architecture == "plain_unet"
    assert spec.n_blocks_per_stage == (2, 2, 2, 2) and spec.n_conv_per_stage_decoder == (2, 2, 2)
    assert isinstance(build_network(spec), UNet)
    explicit = dict(plain, architecture={"name": "plain_unet", "n_blocks_per_stage": [2] * 4,
                                         "n_conv_per_stage_decoder": [2] * 3})
    assert UNetSpec.from_plan(explicit, 1, 2) == spec


def test_plain_unet_follows_its_block_counts():
    plan = dict(PLAN, architecture={"name": "plain_unet", "n_blocks_per_stage": [1, 3, 2, 2],
                                    "n_conv_per_stage_decoder": [1, 2, 3]})
    spec = UNetSpec.from_plan(plan, 1, 2)
    net = build_network(spec)
    assert [len(s) for s in net.encoder] == [1, 3, 2, 2] and [len(d) for d in net.decoder] == [1, 2, 3]
    assert sum(p.numel() for p in net.parameters()) == spec.num_parameters()
    measured = []
    for m in net.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            m.register_forward_hook(lambda _m, _i, out: measured.append(out[0].numel()))
    with torch.no_grad():
        net.eval()(torch.zeros(1, 1, *plan["patch_size"]))
    assert sum(measured) == spec.feature_map_voxels(plan["patch_size"])


@pytest.mark.parametrize("architecture, message", [
    ({"name": "vnet"}, "unknown architecture"),
    ({"n_blocks_per_stage": [1, 1, 1, 1]}, "name"),
    ({"name": "residual_encoder_unet", "n_blocks_per_stage": [1, 3, 4]}, "n_blocks_per_stage must list 4"),
    ({"name": "residual_encoder_unet", "n_conv_per_stage_decoder": [1, 0, 1]}, "n_conv_per_stage_decoder"),
])
def test_bad_architecture_entries_are_refused(architecture, message):
    with pytest.raises(ValueError, match=message):
        UNetSpec.from_plan(dict(PLAN, architecture=architecture), 1, 2)


def test_fields_round_trip_and_fields_from_before_the_architecture_keys():
    spec = UNetSpec.from_plan(PLAN, 2, 3)
    fields = spec.to_fields()
    assert UNetSpec.from_fields(fields) == spec
    assert json.loads(json.dumps(fields)) == fields  # plain ints, strs, lists: JSON- and weights_only-safe
    old = {k: v for k, v in fields.items() if k not in ("architecture", "n_blocks_per_stage",
                                                          "n_conv_per_stage_decoder")}
    old_spec = UNetSpec.from_fields(old)
    assert old_spec.architecture == "plain_unet" and old_spec.n_blocks_per_stage == (2, 2, 2, 2)
