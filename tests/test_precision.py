"""Precision policy: the training and inference rules, the CPU flag probe, and real bf16 training on CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training_helpers import make_work

from toolkit.errors import SegkitError
from toolkit.precision import (
    autocast,
    cpu_has_native_bf16,
    grad_scaler,
    resolve_inference_precision,
    resolve_precision,
)
from toolkit.training.options import TrainerOptions
from toolkit.training.setup import resolve_training
from toolkit.training.trainer import FINAL, LOG, Trainer

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
ZEN3 = "processor\t: 0\nflags\t\t: fpu sse2 avx2\n"


@pytest.mark.parametrize("choice,device,native,expected", [
    ("auto", "cuda", False, "fp16"), ("auto", "cpu", True, "bf16"), ("auto", "cpu", False, "fp32"),
    ("auto", "mps", True, "fp32"), ("mixed", "cpu", False, "bf16"), ("mixed", "cuda", True, "fp16"),
    ("fp32", "cuda", True, "fp32"), ("fp32", "cpu", True, "fp32"),
])
def test_precision_rule(choice, device, native, expected):
    assert resolve_precision(choice, device, native_bf16=native) == expected


def test_bad_precision_is_a_clear_error():
    with pytest.raises(SegkitError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(SegkitError, match="not supported on MPS"):
        resolve_precision("mixed", "mps")


def test_cpu_flags_probe():
    assert cpu_has_native_bf16(ZEN4) and not cpu_has_native_bf16(ZEN3) and not cpu_has_native_bf16("")
    assert cpu_has_native_bf16("flags : sse amx_bf16 amx_tile")


def test_autocast_and_scaler_follow_the_policy():
    conv = torch.nn.Conv3d(1, 2, 3)
    x = torch.randn(1, 1, 5, 5, 5)
    with autocast("bf16", "cpu"):
        assert conv(x).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert conv(x).dtype == torch.float32
    assert grad_scaler("bf16") is None and grad_scaler("fp32") is None


def test_bf16_training_on_cpu_runs_close_to_fp32(tmp_path):
    """--precision mixed trains in bf16 on any CPU: finite, logged, stored, and close to the fp32 run."""
    opts = TrainerOptions(epochs=2, iters_per_epoch=2, val_iters=1, num_workers=0, device="cpu", save_every=10,
                          final_validation=False, seed=3)
    runs = {}
    for precision in ("fp32", "mixed"):
        root, work = make_work(tmp_path / precision)
        fold = Trainer(resolve_training(root, work, "3d_fullres", 0), opts.with_changes(precision=precision)).run()
        runs[precision] = torch.load(fold / FINAL, weights_only=True)
        assert f"precision {'bf16' if precision == 'mixed' else 'fp32'}" in (fold / LOG).read_text()
    bf16, fp32 = runs["mixed"], runs["fp32"]
    assert bf16["options"]["precision"] == "mixed" and bf16["grad_scaler_state"] is None
    assert np.all(np.isfinite(bf16["logs"]["train_loss"]))
    assert np.allclose(bf16["logs"]["train_loss"], fp32["logs"]["train_loss"], atol=0.05)
    assert bf16["logs"]["train_loss"] != fp32["logs"]["train_loss"]  # it really ran in another precision


@pytest.mark.parametrize("choice,device,cuda_bf16,expected", [
    ("auto", "cpu", None, "fp32"), ("mixed", "cpu", None, "bf16"), ("fp32", "cpu", None, "fp32"),
    ("auto", "cuda", True, "bf16"), ("auto", "cuda", False, "fp16"), ("fp32", "cuda", True, "fp32"),
    ("mixed", "mps", None, "fp32"),
])
def test_inference_precision_rule(choice, device, cuda_bf16, expected):
    assert resolve_inference_precision(choice, device, cuda_bf16=cuda_bf16) == expected
