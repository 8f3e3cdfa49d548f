"""The training and validation loaders of one run, built from its resolved setup and options.

Training patches are drawn at the augmentation's sample size (larger than the network patch) and
fully augmented with ``options.augmentation``; validation patches are drawn at the network patch size without augmentation, with
the same foreground oversampling, from the fold's validation cases (an independent random stream).
For the cascade the previous-stage masks are materialized first (see cascade.py). With
``options.augment_on == "device"`` the training loader hands raw windows and drawn parameters to
:class:`DeviceAugmentLoader`, which augments them on ``device`` (device_augment.py).
"""

from __future__ import annotations

from typing import Any

from toolkit.preprocessing.preprocess import location_targets
from toolkit.training.augment import OUTSIDE_MASK, sample_size
from toolkit.training.loader import BatchLoader, BatchSpec
from toolkit.training.options import TrainerOptions
from toolkit.training.sampling import PatchSpec
from toolkit.training.setup import TrainingSetup
from toolkit.training.targets import sampler_values


def _prepare_cascade(setup: TrainingSetup) -> str | None:
    if setup.cascade_folder is None:
        return None
    from toolkit.preprocessing.storage import load_case
    from toolkit.training.cascade import materialize_previous_stage

    cases = setup.train_cases + setup.val_cases
    shapes = {c: tuple(load_case(setup.preprocessed, c)[0].shape[1:]) for c in cases}
    previous = setup.plan["previous_stage"]
    materialize_previous_stage(setup.cascade_folder, setup.work.root / "models" / previous, shapes)
    return str(setup.cascade_folder)


def make_loaders(setup: TrainingSetup, options: TrainerOptions, batch_size: int, num_workers: int,
                 rank: int = 0, world_size: int = 1, device: str = "cpu") -> tuple[Any, BatchLoader]:
    """(training loader, validation loader); validation gets half the workers. ``batch_size`` is the
    global batch; under data-parallel training each rank's loaders draw its shard of it. ``device``:
    where the training batches go (used by ``augment_on="device"``)."""
    final = tuple(int(p) for p in setup.plan["patch_size"])
    cascade = _prepare_cascade(setup)
    masked = tuple(c for c, m in enumerate(setup.plan.get("use_mask_for_norm") or []) if m)
    keys = [key for key, _ in location_targets(setup.spec)]
    annotated = keys.pop() if setup.spec.has_ignore else None  # location_targets puts it last

    on_device = options.augment_on == "device"

    def spec(cases: tuple[str, ...], size: tuple[int, ...], augment: bool, stream: int) -> BatchSpec:
        patches = PatchSpec(str(setup.preprocessed), cases, final, size, batch_size, sampler_values(setup.spec),
                            options.oversample_foreground, cascade, OUTSIDE_MASK if masked else 0,
                            tuple(keys), annotated)
        return BatchSpec(patches, setup.num_classes, augment, options.seed, stream, rank, world_size,
                         options.augmentation, masked, raw=on_device and augment,
                         raw_float16=on_device and str(device).startswith("cuda"))

    train = BatchLoader(spec(setup.train_cases, sample_size(final, options.augmentation), True, 0), num_workers)
    val = BatchLoader(spec(setup.val_cases, final, False, 1), num_workers // 2)
    if on_device:
        from toolkit.training.device_augment import DeviceAugmentLoader

        return DeviceAugmentLoader(train, device), val
    return train, val
