"""Training loss (docs/method.md 1.2): cross-entropy + soft Dice, deep-supervision weighted.

- Soft Dice is computed on softmax probabilities against the one-hot target, background excluded,
  ``(2 I + smooth) / (P + G + smooth)`` with smooth 1e-5, averaged over foreground classes and
  returned negated (as the reference does, so logged losses are comparable and may be negative).
- ``batch_dice`` sums I, P, G over the batch too (one Dice per class for the whole batch) instead of
  one per sample; the reference uses it for 2D (see :func:`default_batch_dice`).
- Deep supervision: one term per head, weights from ``UNetSpec.deep_supervision_weights()``; each
  head's target is the label map downsampled by nearest neighbour (strided picking, what
  ``F.interpolate(mode="nearest")`` does for integer factors) to the head's resolution.
- Regions (``targets.regions``, nnU-Net's DC_and_BCE_loss): BCE-with-logits + soft Dice on the sigmoid of
  every region output (no background to exclude); ignore label (``targets.ignore_index``, nnU-Net's
  DC_and_CE_loss ``ignore_label``): those voxels are left out of CE/BCE and of I, P, G of the Dice at
  every head (docs/method.md 1.2 "Regions and the ignore label").
Also: per-target TP/FP/FN counts of the argmax (regions: sigmoid > 0.5), accumulated over validation
patches for the "pseudo-Dice" of the epoch log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from toolkit.training.targets import TrainingTargets

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


def valid_mask(target: torch.Tensor, targets: TrainingTargets | None) -> torch.Tensor | None:
    """(b, 1, ...) float mask, 0 on ignore-label voxels; None without an ignore label."""
    if targets is None or targets.ignore_index is None:
        return None
    return (target != targets.ignore_index).float()


def region_targets(target: torch.Tensor, regions: Sequence[Sequence[int]], dtype: torch.dtype = torch.float32
                   ) -> torch.Tensor:
    """(b, 1, ...) label indices -> (b, R, ...) membership of each region (what nnU-Net's
    ConvertSegmentationToRegionsTransform makes; here on the training device, per head)."""
    masks = [torch.isin(target[:, 0], torch.as_tensor(list(r), dtype=target.dtype, device=target.device))
             for r in regions]
    return torch.stack(masks, dim=1).to(dtype)


def _dense_targets(target: torch.Tensor, num_outputs: int, targets: TrainingTargets | None) -> torch.Tensor:
    """The Dice/TP target: region memberships, or the one-hot of the labels without background
    (ignore voxels count as background there; the mask removes them)."""
    if targets is not None and targets.regions is not None:
        return region_targets(target, targets.regions)
    if targets is not None and targets.ignore_index is not None:
        target = torch.where(target == targets.ignore_index, torch.zeros_like(target), target)
    return one_hot(target, num_outputs)[:, 1:]


def _soft_dice(probs: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None, batch_dice: bool, smooth: float,
               batch_sum: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
    """Negative mean of (2 I + smooth) / (P + G + smooth) over channels (and samples unless batch Dice)."""
    axes = tuple(range(2, probs.ndim))
    if batch_dice:
        axes = (0, *axes)
    if mask is not None:
        probs, gt = probs * mask, gt * mask
    intersect = (probs * gt).sum(axes)
    denom = probs.sum(axes) + gt.sum(axes)
    if batch_dice and batch_sum is not None:
        intersect, denom = batch_sum(intersect), batch_sum(denom)
    dice = (2 * intersect + smooth) / torch.clip(denom + smooth, min=1e-8)
    return -dice.mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, batch_dice: bool, smooth: float = SMOOTH,
                   batch_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   targets: TrainingTargets | None = None) -> torch.Tensor:
    """Negative mean soft Dice; ``target`` is (b, 1, ...) label indices. Softmax over the classes with
    background excluded, or (regions) sigmoid per region with every region counted (nnU-Net's
    ``do_bg`` False / True); ignore-label voxels are masked out of I, P and G.
    ``batch_sum`` (batch Dice only) sums the Dice terms over data-parallel ranks (global batch)."""
    regions = targets is not None and targets.regions is not None
    probs = torch.sigmoid(logits.float()) if regions else torch.softmax(logits.float(), dim=1)[:, 1:]
    with torch.no_grad():
        gt = _dense_targets(target, logits.shape[1], targets)
        mask = valid_mask(target, targets)
    return _soft_dice(probs, gt, mask, batch_dice, smooth, batch_sum)


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor, targets: TrainingTargets | None) -> torch.Tensor:
    """Softmax CE averaged over the annotated voxels (0 when the patch has none, as nnU-Net skips it)."""
    labels = target[:, 0].long()
    if targets is None or targets.ignore_index is None:
        return F.cross_entropy(logits.float(), labels)
    if not bool((labels != targets.ignore_index).any()):
        return logits.float().sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=targets.ignore_index)


def _binary_cross_entropy(logits: torch.Tensor, target: torch.Tensor, targets: TrainingTargets) -> torch.Tensor:
    """BCE-with-logits of every region. Without an ignore label: the mean over all elements. With one,
    nnU-Net's DC_and_BCE_loss: the masked sum over regions and annotated voxels divided by the number of
    annotated voxels (not times the regions), i.e. the per-region means summed."""
    with torch.no_grad():
        gt = region_targets(target, targets.regions)
        mask = valid_mask(target, targets)
    if mask is None:
        return F.binary_cross_entropy_with_logits(logits.float(), gt)
    bce = F.binary_cross_entropy_with_logits(logits.float(), gt, reduction="none")
    return (bce * mask).sum() / torch.clip(mask.sum(), min=1e-8)


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor, batch_dice: bool,
                 batch_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 targets: TrainingTargets | None = None) -> torch.Tensor:
    """CE + soft Dice (regions: BCE + soft Dice), weight 1 each; ``targets`` None = plain classes."""
    regions = targets is not None and targets.regions is not None
    ce = _binary_cross_entropy(logits, target, targets) if regions else _cross_entropy(logits, target, targets)
    return ce + soft_dice_loss(logits, target, batch_dice, batch_sum=batch_sum, targets=targets)


def downsample_target(target: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour downsampling of a (b, 1, ...) label map to spatial ``shape``."""
    if tuple(target.shape[2:]) == tuple(shape):
        return target
    return F.interpolate(target.float(), size=tuple(shape), mode="nearest").to(target.dtype)


def deep_supervision_loss(
    outputs: Sequence[torch.Tensor] | torch.Tensor, target: torch.Tensor, weights: Sequence[float], batch_dice: bool,
    batch_sum: Callable[[torch.Tensor], torch.Tensor] | None = None, targets: TrainingTargets | None = None,
) -> torch.Tensor:
    """Weighted sum of CE + Dice over the heads (highest resolution first); each head's region
    targets and ignore mask come from its own nearest-downsampled label map."""
    if isinstance(outputs, torch.Tensor):
        outputs = [outputs]
    if len(outputs) != len(weights):
        raise ValueError(f"{len(outputs)} outputs but {len(weights)} deep-supervision weights")
    total = outputs[0].new_zeros((), dtype=torch.float32)
    for out, w in zip(outputs, weights, strict=True):
        total = total + w * ce_dice_loss(out, downsample_target(target, out.shape[2:]), batch_dice, batch_sum, targets)
    return total


@torch.no_grad()
def tp_fp_fn(logits: torch.Tensor, target: torch.Tensor, targets: TrainingTargets | None = None) -> torch.Tensor:
    """(3, T) counts of true positives, false positives, false negatives per foreground target: the
    argmax's classes (background excluded), or each region's sigmoid > 0.5; ignore voxels not counted."""
    if targets is not None and targets.regions is not None:
        pred = (logits > 0).float()  # sigmoid(x) > 0.5
    else:
        pred = one_hot(logits.argmax(1, keepdim=True), logits.shape[1])[:, 1:]
    gt = _dense_targets(target, logits.shape[1], targets)
    mask = valid_mask(target, targets)
    if mask is not None:
        pred, gt = pred * mask, gt * mask
    axes = (0, *range(2, logits.ndim))
    tp = (pred * gt).sum(axes)
    return torch.stack([tp, pred.sum(axes) - tp, gt.sum(axes) - tp]).double().cpu()


def pseudo_dice(counts: torch.Tensor) -> list[float]:
    """Per-class Dice 2TP / (2TP + FP + FN) from accumulated counts (NaN-free: empty -> 0)."""
    tp, fp, fn = counts
    denom = 2 * tp + fp + fn
    return [float(2 * t / d) if d > 0 else 0.0 for t, d in zip(tp.tolist(), denom.tolist(), strict=True)]
