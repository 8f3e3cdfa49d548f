"""The whole training augmentation on the training device, one batched call per step (``augment_on="device"``).

Why: nnU-Net training is CPU-bound when the augmentation workers cannot keep up with the GPU step
(and the workers themselves are a frequent source of crashes). With ``augment_on="device"`` the
loader (device_loader.py: in-process or a few worker processes) only reads raw windows and draws the
parameters; :class:`DeviceAugmenter` moves them to the device (float16 images on CUDA, int8 labels)
and applies docs/method.md 1.2's pipeline there in the worker path's order, with its probabilities,
ranges and rules (augment.py): rotation/scaling + centre crop (batched grid_sample; the samples that
drew neither are plain crops already), Gaussian noise (per-sample seeded torch generators), blur
(grouped separable convolutions), brightness, contrast, low-resolution simulation, gamma, inverted
gamma, mirroring, the non-zero-mask reset, and for the cascade the one-hot previous stage with its
corruption. Each transform equals its numpy twin on equal parameters to float32 rounding
(tests/test_device_augment.py); docs/augmentation.md "Augmentation on the training device" lists
what differs (the noise field's generator, the component pick's draw, float16 transfer on CUDA).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from toolkit.training.augment import OUTSIDE_MASK, Augmenter
from toolkit.training.transforms import torch_intensity as ti
from toolkit.training.transforms.torch_cascade import corrupt_previous_stage
from toolkit.training.transforms.torch_spatial import warp


class DeviceAugmenter:
    """Applies the training augmentation to a raw batch (device_loader.RawBatchMaker) on ``device``."""

    def __init__(self, spec: Any, device: str | torch.device) -> None:  # spec: loader.BatchSpec
        p = spec.patches
        self.augmenter = Augmenter(p.final_size, p.sample_size, spec.settings, spec.mask_channels)
        self.settings, self.num_classes = spec.settings, spec.num_classes
        self.cascade = p.cascade_folder is not None
        self.device = torch.device(device)

    def _tensor(self, array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        else:
            t = t.to(self.device)
        return t if dtype is None else t.to(dtype)

    @torch.no_grad()
    def __call__(self, raw: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"data": (b, c[+K], *patch) float32, "seg": (b, 1, *patch) int16}`` on the device.
        On a CPU device the ops run single-threaded, as the worker path does in-process: they are
        small, and intra-op threads stall on them whenever the cores are busy (bench/README.md)."""
        if self.device.type != "cpu":
            return self._augment(raw)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._augment(raw)
        finally:
            torch.set_num_threads(threads)

    def _augment(self, raw: dict[str, Any]) -> dict[str, torch.Tensor]:
        data, seg = self._spatial(raw)
        self._intensity(data, raw)
        data, seg = ti.mirror(data, seg, raw["flips"])
        data = ti.reset_outside_mask(data, seg, self.augmenter.mask_channels)
        if self.cascade:
            data = torch.cat([data, self._previous_stage(seg[:, 1:], raw)], dim=1)
        return {"data": data, "seg": seg[:, :1].clamp(min=0)}

    def _label_sets(self, seg: np.ndarray) -> tuple[list[list[int]], list[int]]:
        """Per seg channel of the (host) windows: the labels to resample as indicators (ascending)
        and the implied one."""
        k, pad = self.num_classes, self.augmenter.pad_label
        # the label channel may also hold the ignore label's index (the next one after the labels)
        first = list(range(0 if pad == OUTSIDE_MASK else 1, max(k, int(seg[:, 0].max()) + 1)))
        if pad != OUTSIDE_MASK and seg[:, 0].min() < 0:
            first = [OUTSIDE_MASK, *first]
        return [first] + [list(range(1, k))] * (seg.shape[1] - 1), [pad] + [0] * (seg.shape[1] - 1)

    def _spatial(self, raw: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        aug = self.augmenter
        warp_index, crop_index = raw["warp_index"], raw["crop_index"]
        n = len(warp_index) + len(crop_index)
        channels, seg_channels = raw["crop_data"].shape[1], raw["crop_seg"].shape[1]
        data = torch.empty((n, channels, *aug.patch), dtype=torch.float32, device=self.device)
        seg = torch.empty((n, seg_channels, *aug.patch), dtype=torch.int16, device=self.device)
        if len(crop_index):
            index = torch.as_tensor(crop_index, device=self.device)
            data[index] = self._tensor(raw["crop_data"], torch.float32)
            seg[index] = self._tensor(raw["crop_seg"], torch.int16)
        if len(warp_index):
            sets, implied = self._label_sets(raw["warp_seg"])
            wdata, wseg = warp(self._tensor(raw["warp_data"], torch.float32), self._tensor(raw["warp_seg"], torch.int16),
                               self._tensor(raw["warp_matrix"]), aug.inplane, sets, implied)
            index = torch.as_tensor(warp_index, device=self.device)
            data[index], seg[index] = wdata, wseg
        return data, seg

    def _intensity(self, data: torch.Tensor, raw: dict[str, Any]) -> None:
        """Steps 2-7 in Augmenter._intensity's order."""
        ti.gaussian_noise(data, raw["noise_std"], raw["noise_seed"])
        ti.gaussian_blur(data, raw["blur_sigma"])
        ti.brightness(data, raw["brightness"])
        ti.contrast(data, raw["contrast"])
        ti.simulate_low_resolution(data, raw["lowres_zoom"], (0,) if self.augmenter.plan.dummy_2d else ())
        ti.gamma(data, raw["gamma"], invert=False)
        ti.gamma(data, raw["gamma_inverted"], invert=True)

    def _previous_stage(self, prev: torch.Tensor, raw: dict[str, Any]) -> torch.Tensor:
        """(b, K, *patch) one-hot previous stage, corrupted per sample with its drawn parameters."""
        classes = torch.arange(self.num_classes, device=self.device).reshape(1, -1, *[1] * (prev.ndim - 2))
        onehot = (prev == classes).to(torch.float32)
        s = self.settings
        for b in range(onehot.shape[0]):
            onehot[b] = corrupt_previous_stage(onehot[b], raw["binary"][b], raw["remove_u"][b],
                                               s.max_component_fraction)
        return onehot


class DeviceAugmentLoader:
    """A training loader whose raw batches are augmented on the device: yields tensors there."""

    def __init__(self, loader: Any, device: str | torch.device) -> None:  # loader: loader.BatchLoader (raw spec)
        self.loader = loader
        self.augmenter = DeviceAugmenter(loader.spec, device)

    def batches(self, epoch: int, count: int) -> Iterator[dict[str, torch.Tensor]]:
        for raw in self.loader.batches(epoch, count):
            yield self.augmenter(raw)

    def close(self) -> None:
        self.loader.close()

    def __enter__(self) -> DeviceAugmentLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
