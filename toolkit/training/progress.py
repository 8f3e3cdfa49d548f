"""Per-epoch log line and ``progress.png`` (loss curves, pseudo-Dice, learning rate, epoch time).

The logs are a dict of lists (one entry per completed epoch), stored in the checkpoint so a resumed
run continues its curves.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.io.atomic import atomic_write_path

LOG_KEYS = ("train_loss", "val_loss", "pseudo_dice", "mean_fg_dice", "ema_fg_dice", "lr", "epoch_time")


def empty_logs() -> dict[str, list]:
    return {k: [] for k in LOG_KEYS}


def epoch_line(logs: dict[str, list], epoch: int, epochs: int) -> str:
    """One line for the last logged epoch (1-based epoch number)."""
    dice = " ".join(f"{d:.4f}" for d in logs["pseudo_dice"][-1])
    return (f"epoch {epoch}/{epochs}  train_loss {logs['train_loss'][-1]:.4f}  val_loss {logs['val_loss'][-1]:.4f}"
            f"  pseudo_dice [{dice}]  ema_dice {logs['ema_fg_dice'][-1]:.4f}  lr {logs['lr'][-1]:.6f}"
            f"  time {logs['epoch_time'][-1]:.1f}s")


def plot_progress(logs: dict[str, list], path: Path) -> None:
    """Three panels: losses with pseudo-Dice (twin axis), learning rate, epoch time. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(1, len(logs["train_loss"]) + 1))
    fig, axes = plt.subplots(3, 1, figsize=(10, 12))
    ax = axes[0]
    ax.plot(x, logs["train_loss"], color="b", label="train loss")
    ax.plot(x, logs["val_loss"], color="r", label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    twin = ax.twinx()
    twin.plot(x, logs["mean_fg_dice"], color="g", ls="dotted", label="pseudo dice")
    twin.plot(x, logs["ema_fg_dice"], color="g", label="pseudo dice (EMA)")
    twin.set_ylabel("pseudo dice")
    ax.legend(loc="upper left")
    twin.legend(loc="upper right")
    axes[1].plot(x, logs["lr"], color="b")
    axes[1].set_ylabel("learning rate")
    axes[2].plot(x, logs["epoch_time"], color="b")
    axes[2].set_ylabel("epoch time [s]")
    for a in axes[1:]:
        a.set_xlabel("epoch")
    fig.tight_layout()
    with atomic_write_path(path, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
