"""Loss values on hand-made tensors, deep-supervision weighting, pseudo-Dice counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from toolkit.training.loss import (
    ce_dice_loss,
    deep_supervision_loss,
    downsample_target,
    pseudo_dice,
    soft_dice_loss,
    tp_fp_fn,
)


def _target() -> torch.Tensor:
    t = torch.zeros(2, 1, 4, 4, dtype=torch.int16)
    t[0, 0, :2, :2] = 1
    t[1, 0, 2:, 2:] = 2
    t[1, 0, 0, 0] = 1
    return t


def test_perfect_logits_give_dice_minus_one_and_tiny_ce():
    t = _target()
    logits = 50.0 * F.one_hot(t[:, 0].long(), 3).permute(0, 3, 1, 2).float()
    assert soft_dice_loss(logits, t, batch_dice=False).item() == pytest.approx(-1.0, abs=1e-5)
    assert ce_dice_loss(logits, t, batch_dice=True).item() == pytest.approx(-1.0, abs=1e-5)


def test_uniform_logits_match_hand_computed_dice_and_ce():
    t = _target()
    logits = torch.zeros(2, 3, 4, 4)
    # batch dice, class 1: 5 voxels, class 2: 4 voxels; every prob = 1/3 over 32 voxels
    d1 = (2 * 5 / 3 + 1e-5) / (32 / 3 + 5 + 1e-5)
    d2 = (2 * 4 / 3 + 1e-5) / (32 / 3 + 4 + 1e-5)
    assert soft_dice_loss(logits, t, batch_dice=True).item() == pytest.approx(-(d1 + d2) / 2, rel=1e-5)
    # sample dice: sample 0 has no class 2 -> (0 + s) / (16/3 + s); background is never counted
    s0 = [(2 * 4 / 3 + 1e-5) / (16 / 3 + 4 + 1e-5), 1e-5 / (16 / 3 + 1e-5)]
    s1 = [(2 / 3 + 1e-5) / (16 / 3 + 1 + 1e-5), (2 * 4 / 3 + 1e-5) / (16 / 3 + 4 + 1e-5)]
    assert soft_dice_loss(logits, t, batch_dice=False).item() == pytest.approx(-sum(s0 + s1) / 4, rel=1e-5)
    ce = ce_dice_loss(logits, t, batch_dice=True).item() - soft_dice_loss(logits, t, batch_dice=True).item()
    assert ce == pytest.approx(math.log(3), rel=1e-5)


def test_deep_supervision_weights_and_nearest_targets():
    t = torch.zeros(1, 1, 8, 8, dtype=torch.int16)
    t[0, 0, ::2, ::2] = 1  # nearest downsampling by 2 keeps exactly these voxels
    small = downsample_target(t, (4, 4))
    assert small.dtype == t.dtype and torch.all(small == 1)
    torch.manual_seed(0)
    outs = [torch.randn(1, 2, 8, 8), torch.randn(1, 2, 4, 4)]
    w = [2 / 3, 1 / 3]
    expected = w[0] * ce_dice_loss(outs[0], t, False) + w[1] * ce_dice_loss(outs[1], small, False)
    assert deep_supervision_loss(outs, t, w, False).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError):
        deep_supervision_loss(outs, t, [1.0], False)


def test_tp_fp_fn_and_pseudo_dice():
    t = _target()
    pred = t.clone()
    pred[1, 0, 0, 0] = 0  # one FN of class 1
    pred[0, 0, 3, 3] = 2  # one FP of class 2
    logits = F.one_hot(pred[:, 0].long(), 3).permute(0, 3, 1, 2).float()
    counts = tp_fp_fn(logits, t)
    assert counts.tolist() == [[4, 4], [0, 1], [1, 0]]
    assert pseudo_dice(counts) == pytest.approx([8 / 9, 8 / 9])
