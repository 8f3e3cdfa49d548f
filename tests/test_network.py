"""The torch U-Net matches its UNetSpec exactly: parameters, feature-map sizes, output shapes."""

from __future__ import annotations

from math import prod

import pytest
import torch
from torch import nn

from toolkit.network.architecture import UNetSpec
from toolkit.network.unet import build_network

PLAN_3D = {  # isotropic 3D, 4 stages
    "patch_size": [16, 24, 16],
    "conv_kernel_sizes": [[3, 3, 3]] * 4,
    "pool_strides": [[2, 2, 2], [2, 2, 2], [1, 2, 1]],
}
PLAN_ANISO = {  # anisotropic: kernel 1 and stride 1 along z in the first stages
    "patch_size": [8, 32, 32],
    "conv_kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
    "pool_strides": [[1, 2, 2], [2, 2, 2], [2, 2, 2]],
}
PLAN_2D = {
    "patch_size": [32, 48],
    "conv_kernel_sizes": [[3, 3]] * 5,
    "pool_strides": [[2, 2], [2, 2], [2, 2], [2, 2]],
}
PLANS = {"3d": PLAN_3D, "aniso": PLAN_ANISO, "2d": PLAN_2D}


def _spec(plan: dict, in_channels: int = 2, num_classes: int = 3) -> UNetSpec:
    return UNetSpec.from_plan(plan, in_channels=in_channels, num_classes=num_classes)


@pytest.mark.parametrize("name", sorted(PLANS))
def test_parameter_count_equals_spec(name):
    spec = _spec(PLANS[name])
    net = build_network(spec)
    assert sum(p.numel() for p in net.parameters()) == spec.num_parameters()


@pytest.mark.parametrize("name", sorted(PLANS))
def test_feature_map_voxels_measured_with_hooks(name):
    plan = PLANS[name]
    spec = _spec(plan)
    net = build_network(spec).eval()
    measured = []
    layer_types = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    for m in net.modules():
        if isinstance(m, layer_types):
            m.register_forward_hook(lambda _m, _i, out: measured.append(out[0].numel()))
    with torch.no_grad():
        net(torch.zeros(1, spec.in_channels, *plan["patch_size"]))
    assert sum(measured) == spec.feature_map_voxels(plan["patch_size"])


@pytest.mark.parametrize("name", sorted(PLANS))
def test_deep_supervision_outputs_and_inference_output(name):
    plan = PLANS[name]
    spec = _spec(plan)
    net = build_network(spec)
    x = torch.randn(2, spec.in_channels, *plan["patch_size"])
    with torch.no_grad():
        outs = net(x)
    shapes = spec.stage_shapes(plan["patch_size"])
    assert isinstance(outs, list) and len(outs) == spec.n_stages - 2 == len(spec.deep_supervision_weights())
    for r, out in enumerate(outs):  # highest resolution first
        assert tuple(out.shape) == (2, spec.num_classes, *shapes[r])
    net.deep_supervision = False
    with torch.no_grad():
        single = net(x)
    assert isinstance(single, torch.Tensor)
    assert tuple(single.shape) == (2, spec.num_classes, *plan["patch_size"])
    assert torch.allclose(single, outs[0])


def test_cascade_extra_input_channels_and_blueprint_layers():
    spec = _spec(PLAN_3D, in_channels=1 + 3, num_classes=3)  # image + one-hot previous stage
    net = build_network(spec)
    first = net.encoder[0][0][0]
    assert first.in_channels == 4 and first.out_channels == 32
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm3d)]
    assert norms and all(m.eps == 1e-5 and m.affine for m in norms)
    acts = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert all(a.negative_slope == 0.01 for a in acts)
    # features 32 doubling, capped at 320 in 3D
    deep = UNetSpec.from_plan({"conv_kernel_sizes": [[3, 3, 3]] * 7, "pool_strides": [[2, 2, 2]] * 6}, 1, 2)
    assert deep.features == (32, 64, 128, 256, 320, 320, 320)
    assert prod(deep.stage_shapes([128, 128, 128])[-1]) == 8
