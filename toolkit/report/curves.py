"""Training curves per configuration: the logs of every fold, read from its checkpoint, in one figure.

The trainer stores its per-epoch logs (losses, pseudo-Dice and its EMA, learning rate, epoch time) in
every checkpoint; ``checkpoint_latest.pt`` is the newest (it is also written at the end of training),
``checkpoint_final.pt`` the fallback. Checkpoints are memory-mapped, so the weights are not read.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.report.markup import esc, num
from toolkit.report.plots import folds_figure


def read_fold_logs(fold_dir: Path) -> dict[str, list] | None:
    """The logs stored in the fold's newest checkpoint, or None if it has none (or it is unreadable)."""
    import torch

    for name in ("checkpoint_latest.pt", "checkpoint_final.pt"):
        path = fold_dir / name
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - a corrupt checkpoint costs the report one curve, not the report
            continue
        logs = state.get("logs") if isinstance(state, dict) else None
        if isinstance(logs, dict) and logs.get("train_loss"):
            return {k: list(v) for k, v in logs.items()}
    return None


def _fold_key(path: Path) -> tuple:
    suffix = path.name.removeprefix("fold_")
    return (0, int(suffix), "") if suffix.isdigit() else (1, 0, suffix)


def curves_section(models: Path, out: Path) -> str:
    """One figure per configuration (folds overlaid) with a row of final values per fold."""
    parts = []
    for config_dir in sorted(p for p in models.glob("*") if p.is_dir()):
        folds = {}
        for fold_dir in sorted(config_dir.glob("fold_*"), key=_fold_key):
            logs = read_fold_logs(fold_dir)
            if logs is not None:
                folds[fold_dir.name.removeprefix("fold_")] = logs
        if not folds:
            continue
        name = f"curves_{config_dir.name}.png"
        folds_figure(config_dir.name, folds, out / name)
        finals = "; ".join(f"fold {k}: {len(v['train_loss'])} epoch(s), EMA pseudo-Dice {num(v['ema_fg_dice'][-1], 3)}"
                           for k, v in folds.items())
        parts.append(f"<figure><img class=curves src='{esc(name)}' alt='training curves {esc(config_dir.name)}'>"
                     f"<figcaption>{esc(config_dir.name)}: {esc(finals)}</figcaption></figure>")
    if not parts:
        return "<p class=note>No training curves yet (no checkpoint with logs).</p>"
    note = ("<p class=note>Per-fold detail (learning rate, epoch time): "
            "models/&lt;configuration&gt;/fold_&lt;k&gt;/progress.png in the work directory.</p>")
    return "".join(parts) + note
