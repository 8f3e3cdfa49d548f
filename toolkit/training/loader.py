"""Batches for training and validation: sampling + augmentation, in-process or in worker processes.

Every sample is a pure function of ``(seed, stream, epoch, batch index, sample index)``: a
``SeedSequence`` of those five values spawns two generators, one for the patch choice, one passed
explicitly to every augmentation step (no global random state anywhere). So results do not
depend on the number of workers or on their scheduling, a resumed run draws exactly the batches an
uninterrupted run would have drawn, and under data-parallel training rank r of W draws the samples
``shard_indices(batch, r, W)`` of the same global batch a single process would draw (with the
foreground rule applied to the global sample index).

Workers are a persistent ``spawn`` process pool (no fork of a process holding torch threads); each
rebuilds the sampler from the picklable :class:`BatchSpec` once, keeps its memory maps open, and
runs single-threaded numpy/scipy/torch (the main process owns the cores for the training step). At most
``prefetch`` batches are in flight, returned in order. ``num_workers=0`` computes batches in the
main process, which is the faster choice when the step itself uses every core (2-core CPU training:
see bench/loader_vs_nnunet.py). With ``BatchSpec.raw`` (``augment_on="device"``) the same processes
only read raw windows and draw the parameters (device_loader.py); device_augment.py augments them.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from toolkit.training.augment_settings import AugmentationSettings
from toolkit.training.sampling import PatchSampler, PatchSpec, num_forced, shard_indices

Batch = dict[str, np.ndarray]
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class BatchSpec:
    """Everything a worker needs to produce batches (picklable)."""

    patches: PatchSpec
    num_classes: int
    augment: bool  # training: full pipeline; validation: none (patches drawn at the final size)
    seed: int
    stream: int  # 0 training, 1 validation: independent random streams
    rank: int = 0  # data-parallel training: this process draws its shard of the global batch
    world_size: int = 1
    settings: AugmentationSettings = AugmentationSettings()  # the training augmentation's parameters
    mask_channels: tuple[int, ...] = ()  # image channels normalised inside the non-zero mask
    raw: bool = False  # augment_on="device": raw windows + drawn parameters (device_loader.py)
    raw_float16: bool = False  # raw image windows as float16 (half the host-to-device bytes)


class BatchMaker:
    """Sampler + augmentation of one process."""

    def __init__(self, spec: BatchSpec) -> None:
        from toolkit.training.augment import Augmenter

        self.spec = spec
        self.sampler = PatchSampler(spec.patches)
        p = spec.patches
        self.augmenter = (Augmenter(p.final_size, p.sample_size, spec.settings, spec.mask_channels)
                          if spec.augment else None)

    def make(self, epoch: int, index: int) -> Batch:
        """This rank's samples of global batch ``index`` of ``epoch``, stacked."""
        p = self.spec.patches
        n_forced = num_forced(p.batch_size, p.oversample)
        samples = [self._make_one(epoch, index, j, j >= p.batch_size - n_forced)
                   for j in shard_indices(p.batch_size, self.spec.rank, self.spec.world_size)]
        batch = {k: np.ascontiguousarray(np.stack([s[k] for s in samples]),
                                         dtype=np.float32 if k == "data" else np.int16) for k in ("data", "seg")}
        np.maximum(batch["seg"], 0, out=batch["seg"])  # outside the non-zero mask (-1) is background
        return batch

    def _make_one(self, epoch: int, index: int, sample: int, force: bool) -> Batch:
        seq = np.random.SeedSequence([self.spec.seed, self.spec.stream, epoch, index, sample])
        patch_seed, aug_seed = seq.spawn(2)
        rng = np.random.default_rng(aug_seed)
        aug = self.augmenter
        matrix = aug.draw_spatial(rng) if aug is not None else None
        window = aug.read_window(matrix) if aug is not None else None
        drawn = self.sampler.sample_one(np.random.default_rng(patch_seed), force, window)
        data, seg = drawn["data"], drawn["seg"]
        if "prev" in drawn:  # the previous stage moves with the label (extra seg channel)
            seg = np.concatenate([seg, drawn["prev"]], axis=0)
        if aug is not None:
            data, seg = aug(data, seg, matrix, rng)
        if "prev" in drawn:
            from toolkit.training.cascade import previous_stage_to_data

            settings = self.spec.settings if self.spec.augment else None
            data = previous_stage_to_data(data, seg[1:], self.spec.num_classes, settings, rng)
            seg = seg[:1]
        return {"data": data, "seg": seg}


def make_batch_maker(spec: BatchSpec):  # noqa: ANN201  (BatchMaker or device_loader.RawBatchMaker)
    """The maker of ``spec``'s batches: augmented here, or raw for augmentation on the device."""
    if spec.raw and spec.augment:
        from toolkit.training.device_loader import RawBatchMaker

        return RawBatchMaker(spec)
    return BatchMaker(spec)


_WORKER: BatchMaker | None = None


def _init_worker(spec: BatchSpec) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(1)  # the main process owns the cores for the training step
    _WORKER = make_batch_maker(spec)


def _work(epoch: int, index: int) -> Batch:
    assert _WORKER is not None
    return _WORKER.make(epoch, index)


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class BatchLoader:
    """Ordered, seeded batches; ``num_workers`` background processes (0 = in-process)."""

    def __init__(self, spec: BatchSpec, num_workers: int = 0, prefetch: int | None = None) -> None:
        self.spec = spec
        self.num_workers = max(0, int(num_workers))
        self.prefetch = prefetch or 2 * max(1, self.num_workers)
        self._pool = None
        self._maker = None
        if self.num_workers == 0:
            self._maker = make_batch_maker(spec)
        else:
            with _single_threaded_children():
                self._pool = mp.get_context("spawn").Pool(self.num_workers, _init_worker, (spec,))

    def batches(self, epoch: int, count: int) -> Iterator[Batch]:
        """Batches ``0 .. count-1`` of ``epoch``, in order."""
        if self._pool is None:
            for i in range(count):
                yield self._maker.make(epoch, i)
            return
        pending: deque = deque()
        submitted = 0
        while submitted < count or pending:
            while submitted < count and len(pending) < self.prefetch:
                pending.append(self._pool.apply_async(_work, (epoch, submitted)))
                submitted += 1
            yield pending.popleft().get()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
