"""Sliding window, Gaussian importance map and mirroring TTA, with tiny hand-made torch modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from toolkit.inference.sliding_window import (
    gaussian_importance_map,
    mirror_variants,
    sliding_window_predict,
    window_starts,
)


class Constant(nn.Module):
    """Outputs the same logits at every voxel, whatever the input."""

    def __init__(self, logits: list[float], ndim: int = 3) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))
        self.ndim = ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == self.ndim + 2
        shape = (x.shape[0], len(self.logits), *x.shape[2:])
        return self.logits.view(1, -1, *([1] * self.ndim)).expand(shape).clone()


class Pointwise(nn.Module):
    """Logits are a fixed function of each voxel's own intensities: position- and flip-invariant."""

    def __init__(self, in_ch: int = 1, k: int = 3, ndim: int = 3) -> None:
        super().__init__()
        conv = nn.Conv3d if ndim == 3 else nn.Conv2d
        torch.manual_seed(0)
        self.conv = conv(in_ch, k, 1)
        self.ndim = ndim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == self.ndim + 2
        return self.conv(x)


def _reference_pointwise(model: Pointwise, data: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if model.ndim == 3:
            return torch.softmax(model(data[None]), 1)[0]
        return torch.softmax(model(data.permute(1, 0, 2, 3)), 1).permute(1, 0, 2, 3)


def test_window_starts_cover_evenly():
    starts = window_starts((100, 64, 65), (40, 64, 32), 0.5)
    assert starts[1] == [0]
    assert starts[0][0] == 0 and starts[0][-1] == 60
    assert starts[2] == [0, 11, 22, 33]  # 4 windows: 3 would need a step > 16
    for axis, patch in ((0, 40), (2, 32)):
        gaps = np.diff(starts[axis])
        assert gaps.max() <= patch * 0.5 and gaps.max() - gaps.min() <= 1  # even spread, step <= half
    assert len(window_starts((10,), (4,), 1.0)[0]) == 3
    with pytest.raises(ValueError):
        window_starts((3,), (4,), 0.5)


def test_gaussian_map_properties_and_cache():
    g = gaussian_importance_map((24, 32, 16))
    assert g.shape == (24, 32, 16) and g.dtype == torch.float32
    assert float(g.max()) == pytest.approx(1.0) and float(g[12, 16, 8]) == pytest.approx(1.0)
    assert float(g.min()) > 0
    # sigma = patch / 8: one sigma from the centre along y (32 -> sigma 4) the value is ~exp(-1/2)
    assert float(g[12, 20, 8]) == pytest.approx(np.exp(-0.5), rel=0.02)
    assert torch.equal(g[:, :, 8 - 3], g[:, :, 8 + 3])  # symmetric around the centre
    assert gaussian_importance_map((24, 32, 16)) is g  # cached per patch size


def test_mirror_variants_counts():
    assert len(mirror_variants((0, 1, 2))) == 8
    assert len(mirror_variants((0, 1))) == 4
    assert mirror_variants(None) == [()]


@pytest.mark.parametrize("shape", [(37, 45, 29), (8, 8, 8), (5, 70, 3)])
def test_constant_model_gives_constant(shape):
    logits = [0.3, -1.0, 2.0]
    expected = torch.softmax(torch.tensor(logits), 0)
    out = sliding_window_predict(Constant(logits), torch.randn(1, *shape), (16, 16, 16), 3, mirror_axes=(0, 1, 2))
    assert out.shape == (3, *shape)
    assert torch.allclose(out, expected.view(3, 1, 1, 1).expand_as(out), atol=1e-6)


@pytest.mark.parametrize("shape,patch", [((37, 45, 29), (16, 16, 16)), ((7, 9, 40), (12, 16, 16)),
                                         ((16, 16, 16), (16, 16, 16))])
@pytest.mark.parametrize("batch", [1, 3])
def test_every_voxel_covered_in_place(shape, patch, batch):
    """A pointwise model must give back exactly the pointwise function at every voxel: any window placed
    wrongly, any voxel left out, or padding not removed in the right place would show."""
    model = Pointwise(in_ch=2)
    data = torch.randn(2, *shape)
    out = sliding_window_predict(model, data, patch, 3, mirror_axes=None, batch_windows=batch)
    assert torch.allclose(out, _reference_pointwise(model, data), atol=1e-5)
    assert torch.allclose(out.sum(0), torch.ones(shape), atol=1e-5)


def test_tta_with_mirror_equivariant_model_is_identity():
    torch.manual_seed(1)
    conv = nn.Conv3d(1, 3, 3, padding=1)
    with torch.no_grad():  # a kernel symmetric under every flip makes the conv flip-equivariant
        w = conv.weight
        w.copy_((w + w.flip(2) + w.flip(3) + w.flip(4) + w.flip(2, 3) + w.flip(2, 4) + w.flip(3, 4)
                 + w.flip(2, 3, 4)) / 8)
    data = torch.randn(1, 30, 27, 33)
    plain = sliding_window_predict(conv, data, (16, 16, 16), 3, mirror_axes=None)
    tta = sliding_window_predict(conv, data, (16, 16, 16), 3, mirror_axes=(0, 1, 2))
    assert torch.allclose(plain, tta, atol=1e-5)


def test_tta_averages_flipped_passes():
    """With an asymmetric kernel TTA changes the result, and equals the mean over the 8 flips."""
    torch.manual_seed(2)
    conv = nn.Conv3d(1, 2, 3, padding=1)
    data = torch.randn(1, 16, 16, 16)
    tta = sliding_window_predict(conv, data, (16, 16, 16), 2, mirror_axes=(0, 1, 2))
    plain = sliding_window_predict(conv, data, (16, 16, 16), 2, mirror_axes=None)
    with torch.no_grad():  # logits averaged over the flips, then the softmax (nnU-Net v2's order)
        logits = sum(conv(data[None].flip([a + 2 for a in v])).flip([a + 2 for a in v])[0]
                     for v in mirror_variants((0, 1, 2))) / 8
        mean_of_softmax = sum(torch.softmax(conv(data[None].flip([a + 2 for a in v])), 1).flip([a + 2 for a in v])[0]
                              for v in mirror_variants((0, 1, 2))) / 8
    assert torch.allclose(tta, torch.softmax(logits, 0), atol=1e-5)
    assert not torch.allclose(tta, mean_of_softmax, atol=1e-4)
    assert not torch.allclose(tta, plain, atol=1e-3)
    raw = sliding_window_predict(conv, data, (16, 16, 16), 2, mirror_axes=(0, 1, 2), nonlinearity=None)
    assert torch.allclose(raw, logits, atol=1e-5)
    sig = sliding_window_predict(conv, data, (16, 16, 16), 2, mirror_axes=(0, 1, 2), nonlinearity="sigmoid")
    assert torch.allclose(sig, torch.sigmoid(logits), atol=1e-5)


def test_unknown_nonlinearity_is_an_error():
    with pytest.raises(ValueError, match="nonlinearity"):
        sliding_window_predict(Pointwise(), torch.randn(1, 4, 4, 4), (4, 4, 4), 3, nonlinearity="relu")


def test_2d_model_predicts_slice_by_slice():
    model = Pointwise(in_ch=1, ndim=2)
    data = torch.randn(1, 5, 23, 40)
    out = sliding_window_predict(model, data, (16, 16), 3, mirror_axes=(0, 1), batch_windows=4)
    assert out.shape == (3, 5, 23, 40)
    assert torch.allclose(out, _reference_pointwise(model, data), atol=1e-5)


def test_2d_tta_is_per_slice_in_plane():
    torch.manual_seed(3)
    conv = nn.Conv2d(1, 2, 3, padding=1)
    data = torch.randn(1, 3, 16, 16)
    out = sliding_window_predict(conv, data, (16, 16), 2, mirror_axes=(0, 1))
    with torch.no_grad():
        slices = data.permute(1, 0, 2, 3)  # (z, c, y, x)
        logits = sum(conv(slices.flip([a + 2 for a in v])).flip([a + 2 for a in v])
                     for v in mirror_variants((0, 1))) / 4
    assert torch.allclose(out, torch.softmax(logits, 1).permute(1, 0, 2, 3), atol=1e-5)


def test_deep_supervision_list_output_uses_highest_resolution():
    class DS(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Pointwise()

        def forward(self, x):
            y = self.inner(x)
            return [y, y[:, :, ::2, ::2, ::2]]

    model = DS()
    data = torch.randn(1, 20, 20, 20)
    out = sliding_window_predict(model, data, (16, 16, 16), 3, mirror_axes=(0,))
    assert torch.allclose(out, _reference_pointwise(model.inner, data), atol=1e-5)


def test_accepts_numpy_and_is_float32():
    out = sliding_window_predict(Pointwise(), np.random.rand(1, 10, 10, 10).astype(np.float64), (8, 8, 8), 3)
    assert out.dtype == torch.float32 and out.shape == (3, 10, 10, 10)


class Recorder(nn.Module):
    """Pointwise model that records batch sizes and can fail like a full GPU for big batches."""

    def __init__(self, oom_above: int | None = None) -> None:
        super().__init__()
        self.inner = Pointwise()
        self.batches: list[int] = []
        self.oom_above = oom_above

    def forward(self, x):
        if self.oom_above is not None and x.shape[0] > self.oom_above:
            raise torch.cuda.OutOfMemoryError("simulated")
        self.batches.append(x.shape[0])
        return self.inner(x)


def test_oom_in_forward_halves_the_batch():
    model = Recorder(oom_above=2)
    data = torch.randn(1, 40, 40, 40)
    out = sliding_window_predict(model, data, (16, 16, 16), 3, mirror_axes=None, batch_windows=8)
    assert max(model.batches) == 2 and sum(model.batches) == 4 * 4 * 4
    assert torch.allclose(out, _reference_pointwise(model.inner, data), atol=1e-5)


def test_oom_of_accumulators_falls_back_to_cpu(monkeypatch):
    import toolkit.inference.sliding_window as sw

    real, devices = sw._accumulate, []

    def flaky(*args, results_device, batch, policy):
        devices.append(results_device)
        if len(devices) == 1:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(*args, results_device=results_device, batch=batch, policy=policy)

    monkeypatch.setattr(sw, "_accumulate", flaky)
    model = Pointwise()
    data = torch.randn(1, 20, 20, 20)
    out = sliding_window_predict(model, data, (16, 16, 16), 3, mirror_axes=None)
    assert [d.type for d in devices] == ["cpu", "cpu"] and len(devices) == 2
    assert torch.allclose(out, _reference_pointwise(model, data), atol=1e-5)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_autocast_matches_cpu_and_batches():
    model = Recorder()
    data = torch.randn(1, 48, 64, 64)
    cpu = sliding_window_predict(model, data, (16, 32, 32), 3, mirror_axes=(0, 1, 2), batch_windows=1)
    model.batches.clear()
    gpu = sliding_window_predict(model.cuda(), data, (16, 32, 32), 3, mirror_axes=(0, 1, 2))
    assert gpu.device.type == "cuda"
    assert max(model.batches) > 1  # the auto batch put several windows in one pass
    assert torch.allclose(gpu.cpu(), cpu, atol=2e-2)  # bf16/fp16 autocast
    assert torch.allclose(gpu.sum(0).cpu(), torch.ones(48, 64, 64), atol=1e-4)


@cuda
def test_cuda_real_unet_3d_and_2d():
    from toolkit.network.architecture import UNetSpec
    from toolkit.network.unet import build_network

    plan3 = {"conv_kernel_sizes": [[1, 3, 3]] + [[3, 3, 3]] * 4, "pool_strides": [[1, 2, 2], [2, 2, 2], [2, 2, 2],
                                                                               [1, 2, 2]]}
    net = build_network(UNetSpec.from_plan(plan3, 1, 3)).cuda()
    net.deep_supervision = False
    data = torch.randn(1, 50, 170, 150)
    out = sliding_window_predict(net, data, (20, 80, 80), 3)
    assert out.shape == (3, 50, 170, 150) and torch.allclose(out.sum(0), torch.ones(1, device="cuda"), atol=1e-4)
    plan2 = {"conv_kernel_sizes": [[3, 3]] * 5, "pool_strides": [[2, 2]] * 4}
    net2 = build_network(UNetSpec.from_plan(plan2, 1, 3)).cuda()
    net2.deep_supervision = False
    out2 = sliding_window_predict(net2, data, (80, 80), 3, mirror_axes=(0, 1))
    assert out2.shape == (3, 50, 170, 150)


def test_cpu_precision_policy_of_a_real_unet():
    """CPU: auto is fp32 exactly (predictions stay what they were); mixed runs the U-Net in bf16, close to fp32."""
    from toolkit.network.architecture import UNetSpec
    from toolkit.network.unet import build_network

    torch.manual_seed(0)
    plan = {"conv_kernel_sizes": [[3, 3, 3]] * 3, "pool_strides": [[2, 2, 2]] * 2, "features_per_stage": [8, 16, 32]}
    net = build_network(UNetSpec.from_plan(plan, 1, 3))
    net.deep_supervision = False
    seen = []
    net.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    data = torch.randn(1, 20, 28, 24)
    args = (net, data, (16, 16, 16), 3)
    auto = sliding_window_predict(*args)
    fp32 = sliding_window_predict(*args, precision="fp32")
    assert set(seen) == {torch.float32} and torch.equal(auto, fp32)
    seen.clear()
    mixed = sliding_window_predict(*args, precision="mixed")
    assert set(seen) == {torch.bfloat16} and mixed.dtype == torch.float32
    assert torch.allclose(mixed.sum(0), torch.ones(1), atol=1e-4)
    assert (mixed - fp32).abs().max() < 0.05 and not torch.equal(mixed, fp32)
