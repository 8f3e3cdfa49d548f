"""Numeric precision of training and inference: fp32, or mixed precision where the hardware runs it natively.

docs/method.md 1.2 trains with automatic mixed precision on CUDA (fp16 autocast + a gradient scaler).
We extend the same idea to CPUs that have native bfloat16 instructions (x86 ``avx512_bf16`` or
``amx_bf16``, e.g. AMD Zen 4, Intel Sapphire Rapids): bf16 autocast there made a Hippocampus training
iteration 1.7x faster on 2 Zen 4 cores at the same Dice (0.81 -> 0.48 s, bench/train_vs_nnunet.py),
and bf16 keeps fp32's exponent range, so no gradient scaler is needed.
Losses are always computed in fp32 (loss.py casts the logits).

Training ``precision`` option: ``auto`` = mixed where native (CUDA: fp16; CPU with native bf16:
bf16), fp32 elsewhere (other CPUs, where bf16 is emulated and slower, and MPS); ``mixed`` = fp16 on
CUDA, bf16 on any CPU; ``fp32`` = never autocast (bit-reproducible across CPUs of one kind).

Inference (``segkit predict --precision``): ``auto`` = autocast on CUDA (bf16 where the GPU has it,
else fp16) and fp32 on CPU, because predictions are the deliverable and stay exactly what they were;
``mixed`` adds bf16 on CPU (speed and label agreement: bench/predict_precision.py);
``fp32`` never autocasts.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from toolkit.errors import SegkitError

CHOICES = ("auto", "fp32", "mixed")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True if the CPU advertises bf16 arithmetic (Linux /proc/cpuinfo flags; False where unknown)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def check_precision(choice: str) -> str:
    """A precision option value, or a one-line error."""
    if choice not in CHOICES:
        raise SegkitError(f"precision must be one of {', '.join(CHOICES)} (got {choice!r})")
    return choice


def resolve_precision(choice: str, device_type: str, native_bf16: bool | None = None) -> str:
    """The dtype policy a training run uses: ``"fp32"``, ``"fp16"`` (CUDA AMP) or ``"bf16"`` (CPU autocast)."""
    check_precision(choice)
    if choice == "fp32" or device_type == "mps":
        if choice == "mixed":
            raise SegkitError("mixed precision is not supported on MPS; use --precision fp32")
        return "fp32"
    if device_type == "cuda":
        return "fp16"
    if choice == "mixed":
        return "bf16"
    return "bf16" if (cpu_has_native_bf16() if native_bf16 is None else native_bf16) else "fp32"


def resolve_inference_precision(choice: str, device_type: str, cuda_bf16: bool | None = None) -> str:
    """The dtype policy of a sliding-window prediction (see the module docstring)."""
    if check_precision(choice) == "fp32" or device_type not in ("cuda", "cpu"):
        return "fp32"
    if device_type == "cuda":
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp16"
    return "bf16" if choice == "mixed" else "fp32"


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """The autocast context for a forward pass under ``precision`` (no-op for fp32)."""
    import torch

    if precision == "fp16":
        return torch.autocast(device_type, dtype=torch.float16)
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def grad_scaler(precision: str) -> Any:
    """fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not."""
    import torch

    return torch.amp.GradScaler("cuda") if precision == "fp16" else None
