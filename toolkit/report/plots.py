"""Report figures (matplotlib, Agg): per-class Dice box plots, validation-case overlays, fold curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.io.atomic import atomic_write_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def dice_boxplot(per_config: dict[str, dict], class_names: dict[str, str], out: Path) -> Path:
    """One box per (configuration, class) of the per-case Dice values (empty-both cases excluded)."""
    plt = _pyplot()
    labels = sorted(class_names)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels) * len(per_config)), 4))
    data, ticks = [], []
    for config, summary in per_config.items():
        for lb in labels:
            values = [c["metrics"][lb].get("Dice") for c in summary["per_case"]]
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


def overlay(image: np.ndarray, ref: np.ndarray, pred: np.ndarray, title: str, out: Path,
            names: dict[str, str] | None = None) -> Path:
    """Image slice with the reference and prediction contours; one colour per class value (legend)."""
    plt = _pyplot()
    if image.ndim == 2:
        image, ref, pred = image[None], ref[None], pred[None]
    z = _best_slice(ref, pred)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    colors = plt.get_cmap("tab10")
    labels = sorted((set(np.unique(ref[z]).tolist()) | set(np.unique(pred[z]).tolist())) - {0})
    for ax, seg, name in ((axes[0], ref, "reference"), (axes[1], pred, "prediction")):
        ax.imshow(image[z], cmap="gray", interpolation="nearest")
        for lb in labels:
            if (seg[z] == lb).any():
                ax.contour(seg[z] == lb, levels=[0.5], colors=[colors(int(lb) % 10)], linewidths=1.2)
        ax.set_title(f"{name} (slice {z})", fontsize=9)
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colors(int(lb) % 10), label=(names or {}).get(int(lb), f"label {lb}"))
               for lb in labels]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    with atomic_write_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out


def folds_figure(config: str, folds: dict[str, dict[str, list]], out: Path) -> Path:
    """Two panels, one colour per fold: losses (train solid, validation dashed) and EMA pseudo-Dice."""
    plt = _pyplot()
    colors = plt.get_cmap("tab10")
    fig, (loss_ax, dice_ax) = plt.subplots(1, 2, figsize=(10, 3.2))
    for i, (fold, logs) in enumerate(folds.items()):
        x = list(range(1, len(logs["train_loss"]) + 1))
        style = {"color": colors(i % 10), "marker": "o" if len(x) <= 12 else None, "markersize": 3}
        loss_ax.plot(x, logs["train_loss"], **style)
        loss_ax.plot(x, logs["val_loss"], ls="--", **style)
        dice_ax.plot(x, logs["ema_fg_dice"], label=f"fold {fold}", **style)
    loss_ax.plot([], [], color="k", label="train")
    loss_ax.plot([], [], color="k", ls="--", label="validation")
    loss_ax.set_ylabel("loss")
    dice_ax.set_ylabel("pseudo-Dice (EMA)")
    dice_ax.set_ylim(0, 1)
    from matplotlib.ticker import MaxNLocator

    epochs = max(len(logs["train_loss"]) for logs in folds.values())
    for ax in (loss_ax, dice_ax):
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, epochs + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if len(folds) > 5 else 1)
    fig.suptitle(config, fontsize=10)
    fig.tight_layout()
    with atomic_write_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out
