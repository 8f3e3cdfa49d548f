"""Step 1 (rotation + scaling + centre crop) for a batch of samples on the training device.

The same geometry, interpolation and label rule as :mod:`toolkit.training.transforms.spatial`
(read its docstring): the sampling grid is built with the same float32 operations in the same order,
so each grid coordinate is bitwise the worker path's, and images and label indicators share one
``grid_sample`` call for the whole batch. The worker path resamples the indicators of the labels
present in each sample; here every label of the channel's label set is resampled (absent ones score
exactly 0 everywhere, which changes neither the arg-max nor the implied label's score), so the
labels are the worker path's.
"""

from __future__ import annotations

import torch
from torch.nn.functional import grid_sample


def sampling_grids(matrices: torch.Tensor, sample: tuple[int, ...], patch: tuple[int, ...]) -> torch.Tensor:
    """(n, *patch, d) grids (xyz order, align_corners=True) for (n, d, d) float64 ``matrices``:
    patch voxel offset ``o`` from the centre samples the normalised input ``matrix @ o / ((S - 1) / 2)``."""
    n, ndim, device = matrices.shape[0], len(patch), matrices.device
    scale = 2.0 / torch.clamp(torch.tensor(sample, dtype=torch.float64, device=device) - 1, min=1)
    to_input = (scale[:, None] * matrices).to(torch.float32)  # (n, d, d), as spatial.sampling_grid
    offsets = [(torch.arange(p, dtype=torch.float32, device=device) - (p - 1) / 2)
               .reshape([1] + [-1 if a == j else 1 for a in range(ndim)]) for j, p in enumerate(patch)]
    coords = []
    for k in reversed(range(ndim)):
        acc = None
        for j in range(ndim):
            term = to_input[:, k, j].reshape(-1, *[1] * ndim) * offsets[j]
            acc = term if acc is None else acc + term
        coords.append(acc.expand(n, *patch))
    return torch.stack(coords, dim=-1)


def label_scores(seg: torch.Tensor, labels: list[list[int]]) -> list[torch.Tensor]:
    """(n, 1, *spatial) float32 indicators: channel c of ``seg`` against each label of ``labels[c]``."""
    return [(seg[:, c: c + 1] == lab).to(torch.float32) for c, labs in enumerate(labels) for lab in labs]


def labels_from_scores(scores: torch.Tensor, labels: list[int], implied: int, dtype: torch.dtype) -> torch.Tensor:
    """Arg-max over (n, K, ...) resampled indicators of ``labels`` (ascending); ``implied`` (the
    lowest label) scores 1 minus their sum and wins ties (spatial._labels_from_scores)."""
    if not labels:
        return torch.full((scores.shape[0], *scores.shape[2:]), implied, dtype=dtype, device=scores.device)
    # running arg-max over the few label channels (torch's argmax across dim 1 is slow on CPU);
    # strictly greater replaces, so the first maximum (the lower label) wins ties
    best_score, best = scores[:, 0].clone(), torch.full_like(scores[:, 0], float(labels[0]), dtype=torch.float32)
    total = scores[:, 0].clone()
    for k in range(1, scores.shape[1]):
        score = scores[:, k]
        better = score > best_score
        best_score = torch.where(better, score, best_score)
        best = torch.where(better, float(labels[k]), best)
        total = total + score
    implied_wins = 1.0 - total >= best_score
    return torch.where(implied_wins, float(implied), best).to(dtype)


def warp(data: torch.Tensor, seg: torch.Tensor, matrices: torch.Tensor, patch: tuple[int, ...],
         label_sets: list[list[int]], implied: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample (n, c, *sample) images and (n, k, *sample) labels to ``patch`` (trailing axes; a
    leading z axis beyond them is resampled slice by slice: dummy 2D). ``label_sets[c]``: the
    labels of seg channel c other than ``implied[c]``, ascending."""
    ndim = len(patch)
    n, c = data.shape[:2]
    sample = tuple(data.shape[-ndim:])
    stacked = torch.cat([data.to(torch.float32), *label_scores(seg, label_sets)], dim=1)
    lead = stacked.shape[1: stacked.ndim - ndim]
    grid = sampling_grids(matrices, sample, patch)
    out = grid_sample(stacked.reshape(n, -1, *sample), grid, mode="bilinear", padding_mode="zeros",
                      align_corners=True).reshape(n, *lead, *patch)
    start, out_seg = c, []
    for labels, imp in zip(label_sets, implied, strict=True):
        out_seg.append(labels_from_scores(out[:, start: start + len(labels)], labels, imp, seg.dtype))
        start += len(labels)
    return out[:, :c], torch.stack(out_seg, dim=1)
