"""Batches for training and validation: sampling + augmentation, in-process or in worker processes.

Every sample is a pure function of ``(seed, stream, epoch, batch index, sample index)``: its random
numbers come from a ``SeedSequence`` of those five values (patch choice) and numpy's global generator
seeded from the same sequence (batchgenerators' transforms, applied per sample; they
also draw from Python's ``random``, which is seeded likewise). So results do not
depend on the number of workers or on their scheduling, a resumed run draws exactly the batches an
uninterrupted run would have drawn, and under data-parallel training rank r of W draws the samples
``shard_indices(batch, r, W)`` of the same global batch a single process would draw (with the
foreground rule applied to the global sample index).

Workers are a persistent ``spawn`` process pool (no fork of a process holding torch threads); each
rebuilds the sampler from the picklable :class:`BatchSpec` once, keeps its memory maps open, and
runs single-threaded numpy/scipy (the main process owns the cores for the training step). At most
``prefetch`` batches are in flight, returned in order. ``num_workers=0`` computes batches in the
main process, which is the faster choice when the step itself uses every core (2-core CPU training:
see bench/loader_vs_nnunet.py).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

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


class BatchMaker:
    """Sampler + transforms of one process."""

    def __init__(self, spec: BatchSpec) -> None:
        from toolkit.training.augment import training_transforms
        from toolkit.training.cascade import PreviousStageToData

        self.spec = spec
        self.sampler = PatchSampler(spec.patches)
        self.transforms = training_transforms(spec.patches.final_size) if spec.augment else None
        self.cascade = PreviousStageToData(spec.num_classes, spec.augment) if spec.patches.cascade_folder else None

    def make(self, epoch: int, index: int) -> Batch:
        """This rank's samples of global batch ``index`` of ``epoch``, stacked."""
        p = self.spec.patches
        n_forced = num_forced(p.batch_size, p.oversample)
        samples = [self._make_one(epoch, index, j, j >= p.batch_size - n_forced)
                   for j in shard_indices(p.batch_size, self.spec.rank, self.spec.world_size)]
        return {k: np.ascontiguousarray(np.concatenate([s[k] for s in samples]),
                                        dtype=np.float32 if k == "data" else np.int16) for k in ("data", "seg")}

    def _make_one(self, epoch: int, index: int, sample: int, force: bool) -> Batch:
        seq = np.random.SeedSequence([self.spec.seed, self.spec.stream, epoch, index, sample])
        patch_seed, aug_seed = seq.spawn(2)
        sample = self.sampler.sample_one(np.random.default_rng(patch_seed), force)
        batch = {k: np.array(v[None]) for k, v in sample.items()}  # a copy: transforms work in place
        if self.cascade is not None:  # the previous stage moves with the label (extra seg channel)
            batch["seg"] = np.concatenate([batch["seg"], batch.pop("prev")], axis=1)
        saved, saved_py = np.random.get_state(), random.getstate()
        np.random.seed(aug_seed.generate_state(1)[0])
        random.seed(int(aug_seed.generate_state(1)[0]))  # batchgenerators also draws from `random`
        try:
            if self.transforms is not None:
                batch = self.transforms(**batch)
            if self.cascade is not None:
                seg = batch["seg"]
                batch = self.cascade(data=batch["data"], seg=seg[:, :1], prev=seg[:, 1:])
        finally:
            np.random.set_state(saved)
            random.setstate(saved_py)
        return batch


_WORKER: BatchMaker | None = None


def _init_worker(spec: BatchSpec) -> None:
    global _WORKER
    _WORKER = BatchMaker(spec)


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
            self._maker = BatchMaker(spec)
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
