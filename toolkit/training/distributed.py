"""Data-parallel training of one fold (torch DistributedDataParallel): launch, ranks, collectives.

Why the numbers equal a single-process run with the same global batch:
- every rank draws its contiguous slice ``shard_indices(batch, rank, world)`` of the *global* batch,
  each sample a pure function of its global index (loader.py), and the 33% foreground rule is
  applied to the global index, so the union of the ranks' samples is exactly the single-process batch;
- each rank's loss is scaled by ``n_rank * world / batch`` before backward: DDP averages gradients
  over ranks, so the step uses the gradient of the global-batch mean loss even when the batch does
  not divide evenly;
- with batch Dice (2D) the Dice sums are all-reduced with a differentiable all-reduce, so every rank
  sees the global Dice (its gradient flows back to every rank's samples);
- gradient clipping acts on the averaged (global) gradient; the network has no batch statistics
  (instance norm); all ranks start from the same seed and DDP broadcasts rank 0's weights.
Logged losses are the sample-weighted mean over ranks, validation TP/FP/FN are summed over ranks.
Only rank 0 writes (checkpoints, logs, progress.png, final validation); Ctrl-C/SIGTERM on any
rank stops every rank after the same iteration (a flag all-reduced each iteration).

Launch: ``launch_training`` runs in-process for one process, joins the group set up by ``torchrun``
when its environment variables are present (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), and
otherwise spawns ``world_size`` processes itself (torch.multiprocessing, spawn). Device "cpu" uses
gloo, "cuda" uses nccl with one GPU per rank (LOCAL_RANK).
"""

from __future__ import annotations

import functools
import gc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import SegkitError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the data-parallel group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()


def context_from_env(env: dict[str, str] | None = None) -> DistContext | None:
    """The torchrun context if its variables are set (and the world has more than one rank)."""
    env = os.environ if env is None else env
    if not all(v in env for v in TORCHRUN_VARS) or int(env["WORLD_SIZE"]) < 2:
        return None
    return DistContext(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]))


def backend_for(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def rank_device(device: str, ctx: DistContext) -> str:
    """The device of this rank: CUDA ranks get one GPU each (``cuda:<local rank>``)."""
    if ctx.enabled and device in ("cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{ctx.local_rank}"
        if device == "cuda":
            raise SegkitError("--device cuda but CUDA is not available")
    return device


# ---------------------------------------------------------------- collectives (no-ops for one rank)
def all_reduce_sum(tensor: Any, ctx: DistContext) -> Any:
    """Sum ``tensor`` over ranks in place (returned for chaining)."""
    if ctx.enabled:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def weighted_mean(value: float, weight: float, ctx: DistContext, device: Any) -> float:
    """sum_r(value_r * weight_r) over ranks (the weights of all ranks sum to 1)."""
    if not ctx.enabled:
        return value
    import torch

    t = torch.tensor([value * weight], dtype=torch.float64, device=device)
    return float(all_reduce_sum(t, ctx)[0])


def any_rank(flag: bool, ctx: DistContext, device: Any) -> bool:
    """True on every rank if ``flag`` is true on any rank (stop requests)."""
    if not ctx.enabled:
        return flag
    import torch

    return bool(all_reduce_sum(torch.tensor([float(flag)], device=device), ctx)[0] > 0)


def differentiable_sum(tensor: Any) -> Any:
    """All-reduce (sum) that passes gradients back to every rank (batch Dice sums).

    y = sum_r x_r and every rank's loss depends on y, so dL/dx_r = sum_k dL_k/dy: the backward is
    an all-reduce of the incoming gradient. Our own autograd function on the plain collective:
    ``torch.distributed.nn``'s equivalent is deprecated (it warns on every call).
    """
    return _all_reduce_sum_op().apply(tensor)


@functools.cache
def _all_reduce_sum_op() -> Any:  # built lazily: importing this module needs no torch
    import torch
    import torch.distributed as dist

    class AllReduceSum(torch.autograd.Function):
        @staticmethod
        def forward(_ctx: Any, x: Any) -> Any:  # noqa: ANN401
            out = x.detach().clone()
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
            return out

        @staticmethod
        def backward(_ctx: Any, grad: Any) -> Any:  # noqa: ANN401
            grad = grad.contiguous().clone()
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            return grad

    return AllReduceSum


# ---------------------------------------------------------------- launch
def check_world(world_size: int, batch_size: int, device: str) -> None:
    """User-facing checks before any process starts."""
    if world_size < 1:
        raise SegkitError(f"--num-gpus must be >= 1 (got {world_size})")
    if batch_size < world_size:
        raise SegkitError(f"the global batch ({batch_size}) is smaller than the number of ranks ({world_size})")
    if device in ("cuda", "auto") and world_size > 1:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if device == "cuda" and n < world_size:
            raise SegkitError(f"--num-gpus {world_size} but only {n} CUDA device(s) are visible")
    if device == "mps" and world_size > 1:
        raise SegkitError("data-parallel training is not supported on MPS")


def launch_training(setup: Any, options: Any, resume: bool = False) -> Path:
    """Train one fold with ``options.world_size`` ranks (see the module docstring); returns the fold folder."""
    from toolkit.training.trainer import Trainer

    env_ctx = context_from_env()
    if env_ctx is not None:  # started by torchrun: it owns the processes and the rendezvous
        return _run_rank(env_ctx, setup, options.with_changes(world_size=env_ctx.world_size), resume)
    world = int(options.world_size)
    check_world(world, int(options.batch_size or setup.plan["batch_size"]), options.device)
    if world == 1:
        return Trainer(setup, options).run(resume=resume)
    import tempfile

    import torch.multiprocessing as tmp

    errors = tmp.get_context("spawn").SimpleQueue()
    with tempfile.TemporaryDirectory(prefix="segkit-ddp-") as rendezvous:  # a file store: no port to race for
        init = f"file://{rendezvous}/store"
        try:
            tmp.spawn(_spawned, args=(world, init, setup, options, resume, errors), nprocs=world, join=True)
        except tmp.ProcessExitedException:
            if not errors.empty():
                message, path = errors.get()
                raise SegkitError(message, path) from None
            raise
    return setup.fold_dir


def _spawned(rank: int, world: int, init: str, setup: Any, options: Any, resume: bool, errors: Any) -> None:
    try:
        _run_rank(DistContext(rank, world, rank), setup, options, resume, init)
    except SegkitError as exc:  # one line for the user, from the parent process
        errors.put((exc.message, str(exc.path) if exc.path is not None else None))
        raise SystemExit(2) from None


def _run_rank(ctx: DistContext, setup: Any, options: Any, resume: bool, init: str = "env://") -> Path:
    import torch
    import torch.distributed as dist

    from toolkit.training.trainer import Trainer

    device = rank_device(options.device, ctx)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend_for(device.split(":")[0]), init_method=init, rank=ctx.rank,
                            world_size=ctx.world_size)
    trainer = None
    try:
        trainer = Trainer(setup, options.with_changes(device=device), ctx)
        return trainer.run(resume=resume)
    finally:
        # The DDP reducer holds the group; freed before the group goes, not at interpreter exit
        # (where gloo's threads were destroyed still joinable: SIGABRT on a rank). No barrier here:
        # rank 0's final validation can outlast the group's timeout while the other ranks wait.
        del trainer
        gc.collect()
        dist.destroy_process_group()
