"""Per-epoch log line and ``progress.png`` (loss curves, pseudo-Dice, learning rate, epoch time).

The logs are a dict of lists (one entry per completed epoch), stored in the checkpoint so a resumed
run continues its curves. Every curve is drawn with markers: after one epoch a line has a single
point, which a plain line would not show at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.io.atomic import atomic_write_path

LOG_KEYS = ("train_loss", "val_loss", "pseudo_dice", "mean_fg_dice", "ema_fg_dice", "lr", "epoch_time")
MARKER = {"marker": "o", "markersize": 3}


def empty_logs() -> dict[str, list]:
    return {k: [] for k in LOG_KEYS}


def format_duration(seconds: float) -> str:
    """Compact remaining time: ``45s``, ``12m05s``, ``1h02m``, ``2d03h``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def epoch_line(logs: dict[str, list], epoch: int, epochs: int, eta_s: float | None = None,
               names: Sequence[str] | None = None) -> str:
    """One line for the last logged epoch (1-based epoch number), with the fold's remaining time;
    ``names`` (one per pseudo-Dice entry: the classes or regions) label the values."""
    values = logs["pseudo_dice"][-1]
    if names is not None and len(names) == len(values):
        dice = ", ".join(f"{n}: {d:.4f}" for n, d in zip(names, values, strict=True))
    else:
        dice = " ".join(f"{d:.4f}" for d in values)
    eta = f"  fold ETA {format_duration(eta_s)}" if eta_s is not None else ""
    return (f"epoch {epoch}/{epochs}  train_loss {logs['train_loss'][-1]:.4f}  val_loss {logs['val_loss'][-1]:.4f}"
            f"  pseudo_dice [{dice}]  ema_dice {logs['ema_fg_dice'][-1]:.4f}  lr {logs['lr'][-1]:.6f}"
            f"  time {logs['epoch_time'][-1]:.1f}s{eta}")


def progress_figure(logs: dict[str, list], names: Sequence[str] | None = None) -> Any:
    """Three panels: losses with pseudo-Dice (twin axis), learning rate, epoch time (a matplotlib Figure).
    With ``names`` (the classes or regions) each one's pseudo-Dice is drawn too, thin and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(1, len(logs["train_loss"]) + 1))
    fig, axes = plt.subplots(3, 1, figsize=(10, 12))
    ax = axes[0]
    ax.plot(x, logs["train_loss"], color="b", label="train loss", **MARKER)
    ax.plot(x, logs["val_loss"], color="r", label="val loss", **MARKER)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    twin = ax.twinx()
    twin.plot(x, logs["mean_fg_dice"], color="g", ls="dotted", label="pseudo dice", **MARKER)
    twin.plot(x, logs["ema_fg_dice"], color="g", label="pseudo dice (EMA)", **MARKER)
    for i, name in enumerate(names or ()):
        curve = [d[i] if i < len(d) else float("nan") for d in logs["pseudo_dice"]]
        twin.plot(x, curve, lw=0.8, ls="--", label=f"pseudo dice {name}", **MARKER)
    twin.set_ylabel("pseudo dice")
    ax.legend(loc="upper left")
    twin.legend(loc="upper right")
    axes[1].plot(x, logs["lr"], color="b", **MARKER)
    axes[1].set_ylabel("learning rate")
    axes[2].plot(x, logs["epoch_time"], color="b", **MARKER)
    axes[2].set_ylabel("epoch time [s]")
    for a in axes[1:]:
        a.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def plot_progress(logs: dict[str, list], path: Path, names: Sequence[str] | None = None) -> None:
    """:func:`progress_figure`, written atomically to ``path``."""
    fig = progress_figure(logs, names)  # selects the Agg backend before pyplot is imported here
    import matplotlib.pyplot as plt

    with atomic_write_path(path, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
