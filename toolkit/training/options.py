"""Trainer options: plain data (docs/method.md 1.2 defaults), stored in every checkpoint.

Variants of the trainer are different option values, never subclasses. ``None`` means "derive":
batch size from the plan, workers from the CPU count and device, batch Dice from the plan.
``augment_on`` says where the training augmentation runs: ``"workers"`` (numpy/scipy in the loader
processes) or ``"device"`` (the training device, device_augment.py); None derives it from the device
(:func:`resolve_augment_on`) and the trainer records the resolved value. ``augmentation`` holds every augmentation probability and range (``AugmentationSettings``); in a
checkpoint it is a plain dict, so checkpoints stay ``weights_only`` loadable, and a resumed run
reads it back (an older checkpoint without it gets the defaults).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

from toolkit.training.augment_settings import AugmentationSettings


@dataclass(frozen=True)
class TrainerOptions:
    epochs: int = 1000
    iters_per_epoch: int = 250
    val_iters: int = 50
    batch_size: int | None = None  # None: the plan's
    num_workers: int | None = None  # None: default_num_workers(); 0: in-process
    device: str = "auto"
    seed: int = 12345
    save_every: int = 50  # checkpoint_latest.pt every N epochs (and at interruption, and at the end)
    lr: float = 0.01
    momentum: float = 0.99
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    grad_clip: float = 12.0
    oversample_foreground: float = 0.33
    batch_dice: bool | None = None  # None: toolkit.training.loss.default_batch_dice(plan)
    ema_momentum: float = 0.9  # EMA of the pseudo-Dice: ema = m * ema + (1 - m) * new
    final_validation: bool = True  # predict the fold's validation cases at the end
    world_size: int = 1  # data-parallel ranks (one GPU each on CUDA); batch_size stays the global batch
    precision: str = "auto"  # auto | fp32 | mixed (toolkit.precision)
    augmentation: AugmentationSettings = field(default_factory=AugmentationSettings)
    augment_on: str | None = None  # device | workers; None: resolve_augment_on(device)
    pretrained_weights: str | None = None  # checkpoint the run started from (fine-tuning; pretrained.py)
    pretrained_sha256: str | None = None  # its SHA-256 when the run started

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (the augmentation settings as a dict of lists and numbers)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["augmentation"] = self.augmentation.to_dict()
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "checkpoint options") -> TrainerOptions:
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        if "augmentation" in kept:
            kept["augmentation"] = AugmentationSettings.from_dict(kept["augmentation"], source)
        return cls(**kept)

    def with_changes(self, **changes: Any) -> TrainerOptions:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def cpu_count() -> int:
    """CPUs this process may use (affinity-aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


AUGMENT_ON = ("device", "workers")
DEVICE_PATH_WORKERS = 2  # augment_on="device": loader processes only crop; two keep a GPU step fed


def resolve_augment_on(value: str | None, device_type: str) -> str:
    """Where the augmentation runs: the given value, else the device on CUDA and workers otherwise
    (a CPU step and CPU augmentation share the same cores; numpy's path is the faster there)."""
    if value is None:
        return "device" if device_type == "cuda" else "workers"
    if value not in AUGMENT_ON:
        from toolkit.errors import SegkitError

        raise SegkitError(f"augment_on must be one of {', '.join(AUGMENT_ON)}, not {value!r}")
    return value


def default_num_workers(device_type: str, cpus: int | None = None, augment_on: str = "workers") -> int:
    """Loader workers: none on <= 2 CPUs (they would compete with the step: measured in
    bench/loader_vs_nnunet.py); on an accelerator all but one CPU, at most 12 (the reference's
    default), or at most 2 when they only crop (``augment_on="device"``); on CPU training a quarter
    of the CPUs, since the step itself needs the cores."""
    cpus = cpus or cpu_count()
    if cpus <= 2:
        return 0
    if device_type in ("cuda", "mps"):
        return min(DEVICE_PATH_WORKERS if augment_on == "device" else 12, cpus - 1)
    return max(1, cpus // 4)


def poly_lr(initial: float, epoch: int, epochs: int, exponent: float = 0.9) -> float:
    """lr = initial * (1 - epoch / epochs) ** exponent (set at the start of each epoch)."""
    return initial * (1 - epoch / epochs) ** exponent
