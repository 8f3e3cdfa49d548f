"""Training loss (docs/method.md 1.2): cross-entropy + soft Dice, deep-supervision weighted.

- Soft Dice is computed on softmax probabilities against the one-hot target, background excluded,
  ``(2 I + smooth) / (P + G + smooth)`` with smooth 1e-5, averaged over foreground classes and
  returned negated (as the reference does, so logged losses are comparable and may be negative).
- ``batch_dice`` sums I, P, G over the batch too (one Dice per class for the whole batch) instead of
  one per sample; the reference uses it for 2D (see :func:`default_batch_dice`).
- Deep supervision: one term per head, weights from ``UNetSpec.deep_supervision_weights()``; each
  head's target is the label map downsampled by nearest neighbour (strided picking, what
  ``F.interpolate(mode="nearest")`` does for integer factors) to the head's resolution.
Also: per-class TP/FP/FN counts of the argmax, accumulated over validation patches for the
"pseudo-Dice" of the epoch log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

SMOOTH = 1e-5


def default_batch_dice(plan: dict) -> bool:
    """The plan's ``batch_dice`` if it states one, else batch Dice for 2D only (reference default)."""
    if "batch_dice" in plan:
        return bool(plan["batch_dice"])
    return len(plan["patch_size"]) == 2


def one_hot(target: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(b, 1, ...) integer labels -> (b, K, ...) one-hot."""
    out = torch.zeros((target.shape[0], num_classes, *target.shape[2:]), dtype=dtype, device=target.device)
    return out.scatter_(1, target.long(), 1)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, batch_dice: bool, smooth: float = SMOOTH,
                   batch_sum: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Negative mean soft Dice over the foreground classes; ``target`` is (b, 1, ...) labels.
    ``batch_sum`` (batch Dice only) sums the Dice terms over data-parallel ranks (global batch)."""
    probs = torch.softmax(logits.float(), dim=1)[:, 1:]
    with torch.no_grad():
        gt = one_hot(target, logits.shape[1])[:, 1:]
    axes = tuple(range(2, logits.ndim))
    if batch_dice:
        axes = (0, *axes)
    intersect = (probs * gt).sum(axes)
    denom = probs.sum(axes) + gt.sum(axes)
    if batch_dice and batch_sum is not None:
        intersect, denom = batch_sum(intersect), batch_sum(denom)
    dice = (2 * intersect + smooth) / torch.clip(denom + smooth, min=1e-8)
    return -dice.mean()


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor, batch_dice: bool,
                 batch_sum: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """CE + soft Dice, weight 1 each."""
    ce = F.cross_entropy(logits.float(), target[:, 0].long())
    return ce + soft_dice_loss(logits, target, batch_dice, batch_sum=batch_sum)


def downsample_target(target: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour downsampling of a (b, 1, ...) label map to spatial ``shape``."""
    if tuple(target.shape[2:]) == tuple(shape):
        return target
    return F.interpolate(target.float(), size=tuple(shape), mode="nearest").to(target.dtype)


def deep_supervision_loss(
    outputs: Sequence[torch.Tensor] | torch.Tensor, target: torch.Tensor, weights: Sequence[float], batch_dice: bool,
    batch_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Weighted sum of CE + Dice over the heads (highest resolution first)."""
    if isinstance(outputs, torch.Tensor):
        outputs = [outputs]
    if len(outputs) != len(weights):
        raise ValueError(f"{len(outputs)} outputs but {len(weights)} deep-supervision weights")
    total = outputs[0].new_zeros((), dtype=torch.float32)
    for out, w in zip(outputs, weights, strict=True):
        total = total + w * ce_dice_loss(out, downsample_target(target, out.shape[2:]), batch_dice, batch_sum)
    return total


@torch.no_grad()
def tp_fp_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(3, K-1) counts of true positives, false positives, false negatives per foreground class."""
    k = logits.shape[1]
    pred = one_hot(logits.argmax(1, keepdim=True), k)[:, 1:]
    gt = one_hot(target, k)[:, 1:]
    axes = (0, *range(2, logits.ndim))
    tp = (pred * gt).sum(axes)
    return torch.stack([tp, pred.sum(axes) - tp, gt.sum(axes) - tp]).double().cpu()


def pseudo_dice(counts: torch.Tensor) -> list[float]:
    """Per-class Dice 2TP / (2TP + FP + FN) from accumulated counts (NaN-free: empty -> 0)."""
    tp, fp, fn = counts
    denom = 2 * tp + fp + fn
    return [float(2 * t / d) if d > 0 else 0.0 for t, d in zip(tp.tolist(), denom.tolist(), strict=True)]
