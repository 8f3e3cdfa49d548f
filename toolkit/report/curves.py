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
    """The logs of the fold's newest readable checkpoint; None if it has no checkpoint yet.

    Raises ValueError when checkpoints exist but none of them holds logs (corrupt or foreign files).
    """
    import torch

    paths = [fold_dir / n for n in ("checkpoint_latest.pt", "checkpoint_final.pt") if (fold_dir / n).is_file()]
    for path in paths:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - a corrupt checkpoint costs the report one curve, not the report
            continue
        logs = state.get("logs") if isinstance(state, dict) else None
        if isinstance(logs, dict) and logs.get("train_loss"):
            return {k: list(v) for k, v in logs.items()}
    if paths:
        raise ValueError(f"no training logs in {', '.join(p.name for p in paths)}")
    return None


def _fold_key(path: Path) -> tuple:
    suffix = path.name.removeprefix("fold_")
    return (0, int(suffix), "") if suffix.isdigit() else (1, 0, suffix)


def curves_section(models: Path, out: Path) -> str:
    """One figure per configuration (folds overlaid) with a row of final values per fold."""
    parts, problems = [], []
    for config_dir in sorted(p for p in models.glob("*") if p.is_dir()):
        folds = {}
        for fold_dir in sorted(config_dir.glob("fold_*"), key=_fold_key):
            try:
                logs = read_fold_logs(fold_dir)
            except ValueError as exc:
                problems.append(f"{config_dir.name} {fold_dir.name}: {exc}")
                continue
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
    parts.extend(f"<p class=warn>{esc(p)}</p>" for p in problems)
    if not parts:
        return "<p class=note>No training curves yet (no checkpoint with logs).</p>"
    note = ("<p class=note>Per-fold detail (learning rate, epoch time): "
            "models/&lt;configuration&gt;/fold_&lt;k&gt;/progress.png in the work directory.</p>")
    return "".join(parts) + note
