"""Train one configuration on one fold (docs/method.md 1.2): the loop, checkpoints, resume, interruption.

- SGD Nesterov (momentum 0.99, lr 0.01, weight decay 3e-5), poly schedule set at each epoch start,
  gradient-norm clipping at 12, mixed precision per ``options.precision`` (precision.py: fp16 +
  GradScaler on CUDA as the method says; bf16 autocast on CPUs with native bf16).
- Each epoch: ``iters_per_epoch`` augmented training batches, ``val_iters`` un-augmented validation
  patches (loss + TP/FP/FN of the argmax, or of each region's sigmoid > 0.5, ignore-label voxels
  excluded -> per-class/per-region pseudo-Dice and its EMA), one log line on
  stderr and in ``training_log.txt`` (with the fold's ETA), ``progress.png`` redrawn. On a terminal a
  tqdm bar shows the epoch's iterations (progress_bar.py); ``progress.json`` tells ``segkit status``
  that the fold is training (progress_record.py).
- At every epoch end the full training state is copied to CPU memory; ``checkpoint_latest.pt`` is
  written from it every ``save_every`` epochs and when SIGINT/SIGTERM arrives (the run stops after
  the current iteration and saves the state of the last *completed* epoch, so a resumed run repeats
  the interrupted epoch exactly: batches are a function of (seed, epoch, index), see loader.py).
- ``checkpoint_final.pt`` at the end, then :func:`run_final_validation`.
- Data-parallel (``options.world_size`` > 1, see distributed.py): each rank trains on its shard of
  the global batch through DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit.dataset.folds import NO_VALIDATION, TRAINING_PSEUDO_DICE
from toolkit.io.atomic import atomic_write_json
from toolkit.network.architecture import UNetSpec
from toolkit.network.unet import build_network
from toolkit.precision import autocast, grad_scaler, resolve_precision
from toolkit.training import checkpoint as ckpt
from toolkit.training import distributed as dist
from toolkit.training.loss import deep_supervision_loss, default_batch_dice, pseudo_dice, tp_fp_fn
from toolkit.training.options import (
    TrainerOptions,
    cpu_count,
    default_num_workers,
    poly_lr,
    resolve_augment_on,
)
from toolkit.training.progress import empty_logs, epoch_line, plot_progress
from toolkit.training.progress_bar import FoldClock, epoch_bar, eta_text
from toolkit.training.progress_record import ProgressRecord
from toolkit.training.sampling import shard_indices
from toolkit.training.setup import TrainingSetup

LATEST, FINAL, LOG = "checkpoint_latest.pt", "checkpoint_final.pt", "training_log.txt"


def resolve_device(name: str) -> torch.device:
    """auto: CUDA, then MPS, then CPU; an explicit device must be available."""
    from toolkit.inference.model_folder import resolve_device as resolve

    return torch.device(resolve(name))


def configure_threads(device: torch.device, num_workers: int, ranks: int = 1) -> None:
    """CPU training: the step gets every core the workers leave (shared by the ranks on this machine);
    on an accelerator a few suffice."""
    cpus = cpu_count()
    cpu_threads = max(1, (cpus - num_workers * ranks) // ranks)
    torch.set_num_threads(cpu_threads if device.type == "cpu" else max(1, min(4, cpus)))


def run_final_validation(fold_dir: Path, dataset_root: Path, device: str) -> None:
    """Predict the fold's validation cases with full inference settings (docs/method.md 1.4)."""
    from toolkit.inference.validation import predict_validation

    predict_validation(fold_dir, dataset_root, device=device)


def stored_options(fold_dir: Path) -> TrainerOptions:
    """The options saved in a fold's checkpoint_latest.pt (what ``--resume`` continues with)."""
    path = Path(fold_dir) / LATEST
    return TrainerOptions.from_dict(dict(ckpt.load_checkpoint(path)["options"]), str(path))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Trainer:
    """One (configuration, fold) training run; options are data (:class:`TrainerOptions`)."""

    def __init__(self, setup: TrainingSetup, options: TrainerOptions, ctx: dist.DistContext = dist.SINGLE) -> None:
        self.setup, self.options, self.ctx = setup, options, ctx
        self.device = resolve_device(options.device)
        # where the augmentation runs (recorded resolved, so a resumed run keeps it); device_augment.py
        options = self.options = options.with_changes(augment_on=resolve_augment_on(options.augment_on, self.device.type))
        self.num_workers = (options.num_workers if options.num_workers is not None
                            else default_num_workers(self.device.type, augment_on=options.augment_on))
        configure_threads(self.device, self.num_workers, ctx.world_size)
        plan = setup.plan
        self.batch_size = int(options.batch_size or plan["batch_size"])  # the global batch
        self.local_batch = len(shard_indices(self.batch_size, ctx.rank, ctx.world_size))
        self.share = self.local_batch / self.batch_size  # this rank's weight in the global mean
        self.batch_dice = options.batch_dice if options.batch_dice is not None else default_batch_dice(plan)
        self.targets = setup.targets  # classes or regions, ignore label (targets.py)
        self.spec = UNetSpec.from_plan(plan, setup.in_channels, setup.num_outputs)
        self.ds_weights = self.spec.deep_supervision_weights()
        _seed_everything(options.seed)
        self.network = build_network(self.spec).to(self.device)
        self.model = self.network  # what runs forward: the DDP wrapper when data-parallel
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.network, device_ids=ids)
        self.batch_sum = dist.differentiable_sum if ctx.enabled and self.batch_dice else None
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=options.lr, momentum=options.momentum,
                                         weight_decay=options.weight_decay, nesterov=True)
        self.precision = resolve_precision(options.precision, self.device.type)
        self.scaler = grad_scaler(self.precision)
        self.epoch, self.logs = 0, empty_logs()
        self._stop = False
        self.fold_dir = setup.fold_dir
        self.clock = FoldClock(options.iters_per_epoch, options.epochs, 0)  # both replaced by run()
        self.record = ProgressRecord(self.fold_dir, 0, options.epochs, enabled=False)

    # ----------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {
            "network_weights": self.network.state_dict(), "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.scaler.state_dict() if self.scaler else None, "epoch": self.epoch,
            "logs": self.logs, "rng_state": ckpt.capture_rng(), "config": self.setup.config,
            "fold": self.setup.fold, "spec": ckpt.spec_to_dict(self.spec), "options": self.options.to_dict(),
            "labels": list(self.setup.labels), "train_cases": list(self.setup.train_cases),
            **ckpt.label_fields(self.setup.spec),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        from toolkit.errors import SegkitError

        if state.get("config") != self.setup.config or not ckpt.same_spec(state.get("spec"), self.spec):
            raise SegkitError("checkpoint belongs to another configuration or network", self.fold_dir / LATEST)
        self.network.load_state_dict(state["network_weights"])
        self.optimizer.load_state_dict(state["optimizer_state"])
        if self.scaler is not None and state.get("grad_scaler_state"):
            self.scaler.load_state_dict(state["grad_scaler_state"])
        self.epoch, self.logs = int(state["epoch"]), {k: list(v) for k, v in state["logs"].items()}
        ckpt.restore_rng(state["rng_state"])

    # ----------------------------------------------------------------- steps
    def _to_device(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(batch["data"], torch.Tensor):  # augmented on the device already (augment_on="device")
            return batch["data"], batch["seg"]
        pin = self.device.type == "cuda"
        data, seg = torch.from_numpy(batch["data"]), torch.from_numpy(batch["seg"])
        if pin:
            data, seg = data.pin_memory(), seg.pin_memory()
        return data.to(self.device, non_blocking=pin), seg.to(self.device, non_blocking=pin)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.precision, self.device.type)

    def train_step(self, batch: dict[str, np.ndarray]) -> float:
        data, target = self._to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = deep_supervision_loss(self.model(data), target, self.ds_weights, self.batch_dice, self.batch_sum,
                                         self.targets)
        # DDP averages gradients over ranks: scaled so the step follows the global-batch mean loss
        scaled = loss * (self.share * self.ctx.world_size) if self.ctx.enabled else loss
        if self.scaler is not None:
            self.scaler.scale(scaled).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.options.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            scaled.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.options.grad_clip)
            self.optimizer.step()
        return dist.weighted_mean(float(loss.detach()), self.share, self.ctx, self.device)

    @torch.no_grad()
    def val_step(self, batch: dict[str, np.ndarray]) -> tuple[float, torch.Tensor]:
        data, target = self._to_device(batch)
        with self._autocast():
            outputs = self.network(data)
            loss = deep_supervision_loss(outputs, target, self.ds_weights, self.batch_dice, self.batch_sum,
                                         self.targets)
        counts = tp_fp_fn(outputs[0] if isinstance(outputs, list) else outputs, target, self.targets)
        if self.ctx.enabled:
            counts = dist.all_reduce_sum(counts.to(self.device), self.ctx).cpu()
        return dist.weighted_mean(float(loss), self.share, self.ctx, self.device), counts

    # ----------------------------------------------------------------- epochs
    def _run_epoch(self, train_loader, val_loader) -> bool:
        """One epoch; False if interrupted (the epoch's results are then discarded)."""
        o, start = self.options, time.time()
        lr = poly_lr(o.lr, self.epoch, o.epochs, o.poly_exponent)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with epoch_bar(self.epoch, o.epochs, o.iters_per_epoch, self.ctx.is_main) as bar:
            losses = self._train_iterations(train_loader, bar)
            if losses is None:
                return False
            bar.set_postfix_str(f"validating, {eta_text(self.clock.eta(self.epoch, o.iters_per_epoch))}")
            validated = self._validate(val_loader)
        if validated is None:
            return False
        val_losses, counts = validated
        dice = pseudo_dice(counts)
        mean = float(np.mean(dice)) if dice else 0.0
        ema_prev = self.logs["ema_fg_dice"][-1] if self.logs["ema_fg_dice"] else mean
        for key, value in (("train_loss", float(np.mean(losses))), ("val_loss", float(np.mean(val_losses or [0]))),
                           ("pseudo_dice", dice), ("mean_fg_dice", mean),
                           ("ema_fg_dice", o.ema_momentum * ema_prev + (1 - o.ema_momentum) * mean),
                           ("lr", lr), ("epoch_time", time.time() - start)):
            self.logs[key].append(value)
        self.epoch += 1
        return True

    def _train_iterations(self, loader, bar) -> list[float] | None:
        """The epoch's training steps (loss and the fold's ETA on the bar); None if a stop was requested."""
        self.network.train()
        losses: list[float] = []
        for i, batch in enumerate(loader.batches(self.epoch, self.options.iters_per_epoch), 1):
            losses.append(self.train_step(batch))
            eta = self.clock.eta(self.epoch, i)
            self.record.update(eta_at=None if eta is None else time.time() + eta)
            bar.set_postfix_str(f"loss {losses[-1]:.4f}, {eta_text(eta)}", refresh=False)
            bar.update(1)
            if self._should_stop():
                return None
        return losses

    def _validate(self, loader) -> tuple[list[float], torch.Tensor] | None:
        """Validation patches: losses and summed TP/FP/FN; None if a stop was requested."""
        self.network.eval()
        val_losses, counts = [], torch.zeros(3, len(self.targets.names), dtype=torch.float64)
        for batch in loader.batches(self.epoch, self.options.val_iters):
            loss, c = self.val_step(batch)
            val_losses.append(loss)
            counts += c
            if self._should_stop():
                return None
        return val_losses, counts

    def _should_stop(self) -> bool:
        """A stop request on any rank stops every rank after the same iteration."""
        return dist.any_rank(self._stop, self.ctx, self.device)

    def _log(self, line: str) -> None:
        if not self.ctx.is_main:
            return
        _stderr(line)
        with open(self.fold_dir / LOG, "a") as fh:
            fh.write(line + "\n")

    def run(self, resume: bool = False) -> Path:
        """Train to ``options.epochs`` (continuing from checkpoint_latest.pt with ``resume``)."""
        main = self.ctx.is_main
        if main:
            self.fold_dir.mkdir(parents=True, exist_ok=True)
            self._write_model_metadata()
        self._log(f"{self.setup.config} fold {self.setup.fold}: device {self.device}, precision {self.precision}, "
                  f"global batch {self.batch_size} on {self.ctx.world_size} rank(s), {self.num_workers} loader worker(s), "
                  f"augmentation on the {'device' if self.options.augment_on == 'device' else 'CPU workers'}")
        self._log(f"{len(self.setup.train_cases)} training case(s), {len(self.setup.val_cases)} validation case(s)")
        if not self.setup.held_out:
            self._log(f"{TRAINING_PSEUDO_DICE}; {NO_VALIDATION}")
        if resume:
            self.load_state(ckpt.load_checkpoint(self.fold_dir / LATEST))
            self._log(f"resumed from {self.fold_dir / LATEST} at epoch {self.epoch}")
        elif self.options.pretrained_weights:
            self._load_pretrained()
        o = self.options
        self.clock = FoldClock(o.iters_per_epoch, o.epochs, self.epoch)
        self.record = ProgressRecord(self.fold_dir, self.epoch, o.epochs, enabled=main)
        with self.record.running():
            snapshot = self._train_epochs()
            if not main:
                return self.fold_dir
            ckpt.save_checkpoint(self.fold_dir / LATEST, snapshot)
            ckpt.save_checkpoint(self.fold_dir / FINAL, snapshot)
            if o.final_validation and self.setup.held_out:
                self.record.update(write=True, state="validating", eta_at=None)
                run_final_validation(self.fold_dir, self.setup.dataset_root, str(self.device))
        return self.fold_dir

    def _train_epochs(self) -> dict[str, Any]:
        """The epoch loop; returns the CPU copy of the last state (what the checkpoints hold)."""
        main = self.ctx.is_main
        snapshot = ckpt.to_cpu(self.state())
        with self._loaders() as (train_loader, val_loader), self._signals():
            while self.epoch < self.options.epochs:
                if not self._run_epoch(train_loader, val_loader):
                    if main:
                        ckpt.save_checkpoint(self.fold_dir / LATEST, snapshot)
                    self._log(f"interrupted: saved the state after epoch {snapshot['epoch']} to {LATEST}")
                    raise KeyboardInterrupt
                eta = self.clock.eta(self.epoch, 0)
                self._log(epoch_line(self.logs, self.epoch, self.options.epochs, eta, self.targets.names))
                self.record.update(write=True, epoch=self.epoch, eta_at=time.time() + (eta or 0.0))
                snapshot = ckpt.to_cpu(self.state()) if main else snapshot
                if main:
                    plot_progress(self.logs, self.fold_dir / "progress.png", self.targets.names)
                    if self.epoch % self.options.save_every == 0:
                        ckpt.save_checkpoint(self.fold_dir / LATEST, snapshot)
        return snapshot

    # ----------------------------------------------------------------- edges
    def _load_pretrained(self) -> None:
        """Fine-tuning start (pretrained.py): every rank loads the same tensors; rank 0 logs the list."""
        from toolkit.training.pretrained import file_sha256, load_pretrained

        path = self.options.pretrained_weights
        digest = file_sha256(path)
        if self.options.pretrained_sha256 and digest != self.options.pretrained_sha256:
            from toolkit.errors import SegkitError

            raise SegkitError("pretrained checkpoint changed since the run was configured (SHA-256 differs)", path)
        cascade = self.setup.num_classes if self.setup.cascade_folder else 0
        report = load_pretrained(self.network, path, self.setup.labels, self.setup.image_channels, cascade,
                                 ckpt.label_fields(self.setup.spec)["label_outputs"] if self.targets.has_regions
                                 else None)
        self.options = self.options.with_changes(pretrained_sha256=digest)
        for line in report.lines(str(path)):
            self._log(line)

    def _write_model_metadata(self) -> None:
        root = self.fold_dir.parent
        atomic_write_json(root / "plans.json", self.setup.plans)
        atomic_write_json(root / "dataset.json", self.setup.dataset_json)

    @contextlib.contextmanager
    def _loaders(self) -> Iterator[tuple[Any, Any]]:
        from toolkit.training.data import make_loaders

        train_loader, val_loader = make_loaders(self.setup, self.options, self.batch_size, self.num_workers,
                                                self.ctx.rank, self.ctx.world_size, str(self.device))
        try:
            yield train_loader, val_loader
        finally:
            train_loader.close()
            val_loader.close()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        def handler(signum: int, _frame: Any) -> None:
            self._stop = True

        if threading.current_thread() is not threading.main_thread():  # handlers only work there
            yield
            return
        # SIGUSR2: what SLURM (submitit) sends before a time limit or preemption
        signals = (signal.SIGINT, signal.SIGTERM, *([signal.SIGUSR2] if hasattr(signal, "SIGUSR2") else []))
        previous = {s: signal.signal(s, handler) for s in signals}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
