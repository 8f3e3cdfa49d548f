"""The CPU half of augmentation on the training device (``augment_on="device"``): crops + parameters.

With ``augment_on="device"`` a loader process does no image arithmetic: per sample it draws the
augmentation's parameters and reads the raw window the augmentation needs (the whole sample box
when rotation/scaling is drawn, else just the final patch, exactly as the worker path reads it).
:mod:`toolkit.training.device_augment` then applies the whole pipeline to the batch on the device.

The draws are the worker path's (``loader.BatchMaker._make_one`` + ``Augmenter``): the same
``SeedSequence`` of (seed, stream, epoch, batch, sample) spawns the patch and augmentation
generators, and the augmentation generator is consumed in the worker path's order with the same
probabilities, ranges and rules. Two draws are data-dependent in the worker path and differ here:
- the Gaussian noise field is drawn on the device from a ``torch.Generator`` seeded by a third
  child of the sample's ``SeedSequence`` (the worker path draws it from the augmentation generator,
  so with noise drawn the later parameters of that sample differ from the worker path's, with the
  same distribution);
- the cascade's component removal draws a uniform ``u`` per foreground channel and takes component
  ``floor(u * n)`` of the ``n`` eligible ones (the worker path draws ``integers(n)`` only when n > 0).
Everything stays a pure function of those five numbers, so resume is exact as in the worker path.
Without noise and component removal the parameters equal the worker path's draw for draw.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolkit.training.augment import Augmenter
from toolkit.training.augment_settings import AugmentationSettings
from toolkit.training.sampling import PatchSampler, num_forced, shard_indices
from toolkit.training.transforms.intensity import draw_flips, per_channel
from toolkit.training.transforms.spatial import draw_scale

RawBatch = dict[str, Any]
BINARY_OPS = ("dilation", "erosion", "opening", "closing")  # cascade.random_binary_operator's order


def _per_channel_or_nan(values: list[float | None] | None, channels: int) -> np.ndarray:
    if values is None:
        return np.full(channels, np.nan)
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def draw_intensity(rng: np.random.Generator, s: AugmentationSettings, mirror_axes: tuple[int, ...],
                   n: int) -> dict[str, Any]:
    """Steps 2-8's parameters in ``Augmenter._intensity``'s draw order (NaN: step or channel not
    drawn; the noise field itself is drawn on the device). ``n``: image channels."""
    out: dict[str, Any] = {"noise_std": np.nan}
    if rng.uniform() < s.p_noise:
        out["noise_std"] = float(rng.uniform(*s.noise_std))
    blur = per_channel(rng, n, s.p_blur_channel, lambda: rng.uniform(*s.blur_sigma), True) \
        if rng.uniform() < s.p_blur else None
    out["blur_sigma"] = _per_channel_or_nan(blur, n)
    out["brightness"] = _per_channel_or_nan(
        [rng.uniform(*s.brightness) for _ in range(n)] if rng.uniform() < s.p_brightness else None, n)
    out["contrast"] = _per_channel_or_nan(
        [draw_scale(rng, *s.contrast) for _ in range(n)] if rng.uniform() < s.p_contrast else None, n)
    lowres = per_channel(rng, n, s.p_lowres_channel, lambda: rng.uniform(*s.lowres_zoom)) \
        if rng.uniform() < s.p_lowres else None
    out["lowres_zoom"] = _per_channel_or_nan(lowres, n)
    for key, p in (("gamma", s.p_gamma), ("gamma_inverted", s.p_gamma_inverted)):
        out[key] = _per_channel_or_nan([draw_scale(rng, *s.gamma) for _ in range(n)] if rng.uniform() < p else None, n)
    flips = draw_flips(rng, mirror_axes, s.p_mirror)
    out["flips"] = np.asarray([a in flips for a in range(3)], dtype=bool)
    return out


def draw_cascade(rng: np.random.Generator, num_classes: int, settings: AugmentationSettings) -> dict[str, Any]:
    """The previous-stage corruption's parameters (cascade.previous_stage_to_data's draw order):
    ``binary``: [(channel, operator index, radius), ...] in application order; ``remove_u``: one
    uniform per foreground channel (NaN: not drawn)."""
    binary: list[tuple[int, int, float]] = []
    if rng.uniform() < settings.p_binary_operator:
        for c in rng.permutation(np.arange(1, num_classes)):
            op = int(rng.integers(4))
            binary.append((int(c), op, float(rng.uniform(*settings.ball_radius))))
    remove = np.full(num_classes - 1, np.nan)
    if rng.uniform() < settings.p_remove_component:
        remove = rng.uniform(size=num_classes - 1)
    return {"binary": binary, "remove_u": remove}


class RawBatchMaker:
    """Sampler + parameter draws of one process: batches for :class:`DeviceAugmenter`."""

    def __init__(self, spec) -> None:  # noqa: ANN001  (loader.BatchSpec; no import cycle)
        self.spec = spec
        self.sampler = PatchSampler(spec.patches)
        p = spec.patches
        self.augmenter = Augmenter(p.final_size, p.sample_size, spec.settings, spec.mask_channels)
        self.data_dtype = np.float16 if spec.raw_float16 else np.float32
        self.seg_dtype = np.int8 if spec.num_classes <= 127 else np.int16

    def make(self, epoch: int, index: int) -> RawBatch:
        """This rank's samples of global batch ``index`` of ``epoch``: windows grouped into the
        resampled ones (``warp_*``, sample box) and the plain crops (``crop_*``, final patch)."""
        p = self.spec.patches
        n_forced = num_forced(p.batch_size, p.oversample)
        samples = [self._make_one(epoch, index, j, j >= p.batch_size - n_forced)
                   for j in shard_indices(p.batch_size, self.spec.rank, self.spec.world_size)]
        out: RawBatch = {}
        for group, shape in (("warp", self.augmenter.sample), ("crop", self.augmenter.patch)):
            members = [i for i, s in enumerate(samples) if (s["matrix"] is not None) == (group == "warp")]
            out[f"{group}_index"] = np.asarray(members, dtype=np.int64)
            for key, dtype in (("data", self.data_dtype), ("seg", self.seg_dtype)):
                first = samples[0][key]
                arrays = [samples[i][key] for i in members]
                out[f"{group}_{key}"] = (np.stack(arrays).astype(dtype, copy=False) if arrays
                                         else np.empty((0, first.shape[0], *shape), dtype))
        out["warp_matrix"] = np.asarray([samples[i]["matrix"] for i in out["warp_index"]], dtype=np.float64)
        for key in samples[0]["params"]:
            values = [s["params"][key] for s in samples]
            out[key] = values if key == "binary" else np.stack(values)
        return out

    def _make_one(self, epoch: int, index: int, sample: int, force: bool) -> dict[str, Any]:
        s = self.spec
        seq = np.random.SeedSequence([s.seed, s.stream, epoch, index, sample])
        patch_seed, aug_seed, noise_seed = seq.spawn(3)  # the first two are the worker path's
        rng = np.random.default_rng(aug_seed)
        aug = self.augmenter
        matrix = aug.draw_spatial(rng)
        drawn = self.sampler.sample_one(np.random.default_rng(patch_seed), force, aug.read_window(matrix))
        seg = drawn["seg"] if "prev" not in drawn else np.concatenate([drawn["seg"], drawn["prev"]], axis=0)
        channels = drawn["data"].shape[0]
        params = draw_intensity(rng, s.settings, aug.plan.mirror_axes, channels)
        params["noise_seed"] = np.int64(noise_seed.generate_state(1, np.uint64)[0] >> np.uint64(1))
        if "prev" in drawn:
            params.update(draw_cascade(rng, s.num_classes, s.settings))
        return {"data": drawn["data"], "seg": seg, "matrix": matrix, "params": params}
