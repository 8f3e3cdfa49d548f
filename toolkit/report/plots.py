"""Report figures (matplotlib, Agg): per-class Dice box plots and validation-case overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.io.atomic import atomic_write_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def dice_boxplot(per_config: dict[str, dict], class_names: dict[int, str], out: Path) -> Path:
    """One box per (configuration, class) of the per-case Dice values (empty-both cases excluded)."""
    plt = _pyplot()
    labels = sorted(class_names)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels) * len(per_config)), 4))
    data, ticks = [], []
    for config, summary in per_config.items():
        for lb in labels:
            values = [c["metrics"][str(lb)].get("Dice") for c in summary["per_case"]]
            data.append([v for v in values if v is not None] or [np.nan])
            ticks.append(f"{config}\n{class_names[lb]}")
    ax.boxplot(data)
    ax.set_xticks(range(1, len(ticks) + 1), ticks, fontsize=8)
    ax.set_ylabel("Dice per case")
    ax.set_ylim(0, 1.02)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_write_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out


def _best_slice(ref: np.ndarray, pred: np.ndarray) -> int:
    """The axial slice with the most foreground in reference or prediction."""
    counts = (ref > 0).reshape(ref.shape[0], -1).sum(1) + (pred > 0).reshape(pred.shape[0], -1).sum(1)
    return int(np.argmax(counts))


def overlay(image: np.ndarray, ref: np.ndarray, pred: np.ndarray, title: str, out: Path) -> Path:
    """Image slice with the reference (solid) and prediction (dashed) contours of every class."""
    plt = _pyplot()
    if image.ndim == 2:
        image, ref, pred = image[None], ref[None], pred[None]
    z = _best_slice(ref, pred)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    colors = plt.get_cmap("tab10")
    for ax, seg, name in ((axes[0], ref, "reference"), (axes[1], pred, "prediction")):
        ax.imshow(image[z], cmap="gray", interpolation="nearest")
        for i, lb in enumerate(sorted(set(np.unique(ref[z])) | set(np.unique(pred[z])) - {0})):
            if lb == 0:
                continue
            ax.contour(seg[z] == lb, levels=[0.5], colors=[colors(i % 10)], linewidths=1.2)
        ax.set_title(f"{name} (slice {z})", fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_write_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out
