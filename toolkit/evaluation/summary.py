"""Aggregating per-case metrics into class means and the foreground mean, and printing them.

Means skip ``None`` values, which is how the empty-both rule reaches the means: a case where a class
is absent from both prediction and reference does not count for that class' Dice/IoU/HD95/NSD.
The foreground mean is the mean over classes of the class means (nnU-Net's ``foreground_mean``),
so the model-selection score is "mean over foreground classes of the mean per-case Dice".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from toolkit.dataset.labels import target_key
from toolkit.evaluation.metrics import METRIC_KEYS, Target


def _mean(values: Iterable[float | int | None]) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def summarize(per_case: Sequence[dict], labels: Sequence[Target]) -> dict:
    """``{"mean": {"<label>": {metric: mean}}, "foreground_mean": {metric: mean}}`` of per-case results.

    Each per-case entry holds ``"metrics": {"<label>": {metric: value}}``; metrics missing from
    the entries (e.g. surface metrics when they were not computed) are left out.
    """
    names = [target_key(lb) for lb in labels]
    keys = [k for k in METRIC_KEYS if any(k in c["metrics"].get(n, {}) for c in per_case for n in names)]
    mean = {n: {k: _mean(c["metrics"][n].get(k) for c in per_case) for k in keys} for n in names}
    foreground = {k: _mean(mean[n][k] for n in names) for k in keys}
    return {"mean": mean, "foreground_mean": foreground}


def restrict(summary: dict, case_ids: Iterable[str], labels: Sequence[Target]) -> dict:
    """The summary recomputed over a subset of its cases (for comparing candidates on equal cases)."""
    wanted = set(case_ids)
    return summarize([c for c in summary["per_case"] if c["case"] in wanted], labels)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(summary: dict, names: dict | None = None) -> str:
    """A plain-text table: one row per class or region plus the foreground mean (``names`` by metric key)."""
    names = {str(k): v for k, v in (names or {}).items()}
    cols = ("Dice", "IoU", "HD95", "NSD", "volume_pred_mm3", "volume_ref_mm3")
    header = ["class", "n_eval"] + [c.replace("volume_", "vol_") for c in cols]
    rows = []
    for label, means in summary["mean"].items():
        n_eval = sum(1 for c in summary.get("per_case", []) if c["metrics"][label].get("Dice") is not None)
        name = names.get(label, "")
        rows.append([f"{label} {name}".strip(), str(n_eval)]
                    + [_fmt(means.get(c), 1 if c.startswith("volume") else 4) for c in cols])
    fg = summary["foreground_mean"]
    rows.append(["foreground mean", ""] + [_fmt(fg.get(c), 1 if c.startswith("volume") else 4) for c in cols])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(row, widths, strict=True)))
             for row in [header] + rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
