"""Region (sigmoid, BCE + Dice) and ignore-label losses and pseudo-Dice on tiny tensors, by hand.

Every expectation is computed here from the formulas (nnU-Net v2's DC_and_BCE_loss / DC_and_CE_loss with
``ignore_label``, MemoryEfficientSoftDiceLoss with smooth 1e-5), not by calling the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch

from toolkit.dataset.labels import label_spec
from toolkit.training.loss import ce_dice_loss, deep_supervision_loss, pseudo_dice, soft_dice_loss, tp_fp_fn
from toolkit.training.targets import TrainingTargets, sampler_values, training_targets

S = 1e-5
REGIONS = TrainingTargets(2, ("whole", "inner"), regions=((1, 2), (2,)))
REGIONS_IGNORE = TrainingTargets(2, ("whole", "inner"), regions=((1, 2), (2,)), ignore_index=3)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bce(x: float, y: float) -> float:
    return -(y * math.log(sig(x)) + (1 - y) * math.log(1 - sig(x)))


def dice(p: list[float], g: list[float]) -> float:
    inter = sum(a * b for a, b in zip(p, g, strict=True))
    return (2 * inter + S) / (sum(p) + sum(g) + S)


# one sample, 4 voxels in a row; label indices 0 (bg), 1 (outer only), 2 (inner, inside outer)
TARGET = [0, 1, 2, 2]
LOGITS = [[-1.0, 1.0, 2.0, 0.0], [0.0, 0.5, 3.0, -2.0]]


def _t(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int16).view(1, 1, 1, -1)


def _logits(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows).view(1, len(rows), 1, -1)


def test_training_targets_turn_region_values_into_indices():
    spec = label_spec({"background": 0, "a": [2, 5], "b": 5, "ignore": 6}, [2, 5])
    t = training_targets(spec)
    assert t.regions == ((1, 2), (2,)) and t.ignore_index == 3 and t.num_outputs == 2
    assert t.names == ("a", "b") and sampler_values(spec) == (0, 2, 5, 6)
    plain = training_targets(label_spec({"background": 0, "x": 1, "ignore": 2}))
    assert plain.regions is None and plain.ignore_index == 2 and plain.num_outputs == 2


def test_region_loss_is_mean_bce_plus_sigmoid_dice_over_every_region():
    regions = [[0, 1, 1, 1], [0, 0, 1, 1]]
    mean_bce = sum(bce(x, y) for row, g in zip(LOGITS, regions, strict=True)
                   for x, y in zip(row, g, strict=True)) / 8
    dices = [dice([sig(x) for x in row], g) for row, g in zip(LOGITS, regions, strict=True)]
    loss = ce_dice_loss(_logits(LOGITS), _t(TARGET), batch_dice=False, targets=REGIONS)
    assert loss.item() == pytest.approx(mean_bce - sum(dices) / 2, rel=1e-5)


def test_region_loss_with_ignore_masks_bce_and_dice():
    target = [0, 1, 3, 2]  # voxel 2 unannotated
    keep = [0, 1, 3]
    regions = [[0, 1, 0, 1], [0, 0, 0, 1]]
    # nnU-Net: masked BCE summed over regions and annotated voxels / number of annotated voxels (3, not 6)
    masked_bce = sum(bce(row[i], g[i]) for row, g in zip(LOGITS, regions, strict=True) for i in keep) / 3
    dices = [dice([sig(row[i]) for i in keep], [g[i] for i in keep]) for row, g in zip(LOGITS, regions, strict=True)]
    loss = ce_dice_loss(_logits(LOGITS), _t(target), batch_dice=True, targets=REGIONS_IGNORE)
    assert loss.item() == pytest.approx(masked_bce - sum(dices) / 2, rel=1e-5)


def test_softmax_loss_with_ignore_label_skips_those_voxels():
    targets = TrainingTargets(3, ("a", "b"), ignore_index=3)
    logits = [[1.0, 0.0, 0.0, 2.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    target = [0, 1, 3, 2]
    keep = [0, 1, 3]

    def softmax(i: int) -> list[float]:
        e = [math.exp(row[i]) for row in logits]
        return [v / sum(e) for v in e]

    ce = sum(-math.log(softmax(i)[target[i]]) for i in keep) / 3
    dices = [dice([softmax(i)[c] for i in keep], [float(target[i] == c) for i in keep]) for c in (1, 2)]
    loss = ce_dice_loss(_logits(logits), _t(target), batch_dice=False, targets=targets)
    assert loss.item() == pytest.approx(ce - sum(dices) / 2, rel=1e-5)
    # a patch without any annotated voxel: CE is skipped (0), the Dice of empty sums is smooth/smooth = 1
    empty = ce_dice_loss(_logits(logits), _t([3, 3, 3, 3]), batch_dice=False, targets=targets)
    assert empty.item() == pytest.approx(-1.0, abs=1e-6)
    assert soft_dice_loss(_logits(logits), _t([3, 3, 3, 3]), False, targets=targets).item() == pytest.approx(-1.0)


def test_deep_supervision_masks_ignore_at_every_head():
    t = torch.zeros(1, 1, 4, 4, dtype=torch.int16)
    t[0, 0, 0, 0] = 3  # kept by nearest downsampling (stride 2): ignored at both heads
    t[0, 0, 2:, 2:] = 2
    torch.manual_seed(0)
    outs = [torch.randn(1, 2, 4, 4), torch.randn(1, 2, 2, 2)]
    small = torch.tensor([[3, 0], [0, 2]], dtype=torch.int16).view(1, 1, 2, 2)

    def by_hand(out: torch.Tensor, lab: torch.Tensor) -> float:
        x, lab = out[0].flatten(1).tolist(), lab.flatten().tolist()
        keep = [i for i, v in enumerate(lab) if v != 3]
        gts = [[float(v in (1, 2)) for v in lab], [float(v == 2) for v in lab]]
        b = sum(bce(x[r][i], gts[r][i]) for r in range(2) for i in keep) / len(keep)
        d = [dice([sig(x[r][i]) for i in keep], [gts[r][i] for i in keep]) for r in range(2)]
        return b - sum(d) / 2

    w = [2 / 3, 1 / 3]
    expected = w[0] * by_hand(outs[0], t) + w[1] * by_hand(outs[1], small)
    got = deep_supervision_loss(outs, t, w, batch_dice=False, targets=REGIONS_IGNORE)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_pseudo_dice_counts_per_region_and_skips_ignored_voxels():
    target = [0, 1, 3, 2]
    logits = [[1.0, -1.0, 5.0, 1.0], [1.0, -1.0, 5.0, -1.0]]  # > 0 means sigmoid > 0.5
    counts = tp_fp_fn(_logits(logits), _t(target), REGIONS_IGNORE)
    # whole {1,2}: pred on voxels 0,(2),3 -> tp voxel 3, fp voxel 0, fn voxel 1; voxel 2 ignored
    # inner {2}: pred on 0,(2) -> tp 0, fp voxel 0, fn voxel 3
    assert counts.tolist() == [[1, 0], [1, 1], [1, 1]]
    assert pseudo_dice(counts) == pytest.approx([0.5, 0.0])
    plain = TrainingTargets(3, ("a", "b"), ignore_index=3)
    argmax = [[5.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 5.0], [0.0, 0.0, 5.0, 0.0]]  # predicts 0, 1, 2, 1
    assert tp_fp_fn(_logits(argmax), _t(target), plain).tolist() == [[1, 0], [1, 0], [0, 1]]
