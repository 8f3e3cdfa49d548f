"""Build ``<WORK>/<dataset>/report/index.html`` from what a run left in the work directory.

Sections: dataset fingerprint, plans table, training curves of every fold, cross-validation table,
candidate (single and ensemble) comparison, postprocessing decisions, per-class Dice box plots, and
overlays of the best and worst validation case of the selected model. Sections whose inputs do not
exist yet (e.g. before selection) say so instead of being left out silently.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.io.atomic import atomic_write_path, read_json
from toolkit.io.images import read_image
from toolkit.report.plots import dice_boxplot, overlay
from toolkit.workdir import WorkDir

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:1em;overflow:auto}
img{max-width:100%;border:1px solid #ddd;margin:4px}.sel{background:#e8f6e8;font-weight:bold}.note{color:#777}"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]], highlight: int | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=sel' if i == highlight else ''}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fingerprint_section(wd: WorkDir) -> str:
    if not wd.fingerprint.is_file():
        return "<p class=note>No fingerprint yet (segkit fingerprint).</p>"
    fp = read_json(wd.fingerprint)
    spacings, shapes = np.asarray(fp["spacings"]), np.asarray(fp["shapes_after_crop"])
    rows = [
        ["cases", _e(len(spacings))],
        ["median spacing (z, y, x) mm", _e(" x ".join(f"{v:.3g}" for v in np.median(spacings, 0)))],
        ["median shape after crop", _e(" x ".join(f"{v:.0f}" for v in np.median(shapes, 0)))],
        ["median relative size after crop", _f(fp.get("median_relative_size_after_cropping"), 3)],
    ]
    for ch, props in fp.get("foreground_intensity_properties_per_channel", {}).items():
        stats = ", ".join(f"{k} {_f(props.get(k), 2)}" for k in ("mean", "std", "percentile_00_5", "percentile_99_5"))
        rows.append([f"channel {_e(ch)} foreground", _e(stats)])
    return _table(["property", "value"], rows)


def _plans_section(wd: WorkDir) -> str:
    if not wd.plans.is_file():
        return "<p class=note>No plans yet (segkit plan).</p>"
    from toolkit.planning.table import format_plans_table

    return f"<pre>{_e(format_plans_table(read_json(wd.plans)))}</pre>"


def _curves_section(wd: WorkDir, out: Path) -> str:
    parts = []
    for png in sorted((wd.root / "models").glob("*/fold_*/progress.png")):
        name = f"curves_{png.parent.parent.name}_{png.parent.name}.png"
        shutil.copyfile(png, out / name)
        parts.append(f"<figure><figcaption>{_e(png.parent.parent.name)} {_e(png.parent.name)}</figcaption>"
                     f"<img src='{name}'></figure>")
    return "".join(parts) or "<p class=note>No training curves yet.</p>"


def _cv_section(summaries: dict[str, dict], names: dict[int, str]) -> str:
    if not summaries:
        return "<p class=note>No cross-validation results yet (segkit select).</p>"
    header = ["configuration", "cases", *[f"Dice {names[lb]}" for lb in sorted(names)], "mean fg Dice", "mean fg HD95"]
    rows = []
    for config, s in summaries.items():
        per_class = [_f(s["mean"][str(lb)].get("Dice")) for lb in sorted(names)]
        rows.append([_e(config), _e(len(s["per_case"])), *per_class, _f(s["foreground_mean"].get("Dice")),
                     _f(s["foreground_mean"].get("HD95"), 2)])
    return _table(header, rows)


def _selection_section(selection: dict | None) -> str:
    if selection is None:
        return "<p class=note>No selection yet (segkit select).</p>"
    winner = selection["winner"]["name"]
    cands = sorted(selection["candidates"], key=lambda c: -(c["score"] if c["score"] is not None else -1))
    rows = [[_e(c["name"]), "ensemble" if c["ensemble"] else "single", _e(c["num_cases"]), _f(c["score"])]
            for c in cands]
    top = _table(["candidate", "kind", "cases", "score (mean fg Dice)"], rows,
                 highlight=[c["name"] for c in cands].index(winner))
    steps = []
    for st in selection["postprocessing"]["steps"]:
        steps.append([_e(st["step"]), _e(",".join(map(str, st["labels"]))), "yes" if st["accepted"] else "no",
                      _f(st["foreground_mean_before"]), _f(st["foreground_mean_after"])])
    pp = _table(["postprocessing step", "labels", "accepted", "fg Dice before", "fg Dice after"], steps)
    warn = "".join(f"<p class=note>warning: {_e(w)}</p>" for w in selection.get("warnings", []))
    return f"{top}<h3>Postprocessing (decided on the selected model's CV predictions)</h3>{pp}{warn}"


def _case_score(case: dict) -> float:
    values = [m.get("Dice") for m in case["metrics"].values() if m.get("Dice") is not None]
    return float(np.mean(values)) if values else float("nan")


def _overlay_section(selection: dict | None, wd: WorkDir, dataset: Path | None, out: Path) -> str:
    if selection is None or dataset is None:
        return "<p class=note>Overlays need a selection and the dataset folder.</p>"
    summary = read_json(wd.root / selection["winner"]["folder"] / "summary.json")
    cases = [c for c in summary["per_case"] if not np.isnan(_case_score(c))]
    if not cases:
        return "<p class=note>No scored validation case.</p>"
    cases.sort(key=_case_score)
    ending = read_json(wd.dataset_json)["file_ending"] if wd.dataset_json.is_file() else ".nii.gz"
    parts = []
    for tag, case in (("best", cases[-1]), ("worst", cases[0])):
        image, _ = read_image(dataset / "imagesTr" / f"{case['case']}_0000{ending}")
        ref, _ = read_image(case["reference_file"])
        pred, _ = read_image(case["prediction_file"])
        name = f"overlay_{tag}.png"
        overlay(image, ref, pred, f"{tag}: {case['case']} (mean fg Dice {_case_score(case):.3f})", out / name)
        parts.append(f"<img src='{name}'>")
    return "".join(parts)


def build_report(dataset: str | Path | None, work: str | Path | None, dataset_name: str | None = None) -> Path:
    """Write the report folder and return the path of ``index.html``."""
    wd = WorkDir.for_dataset(work, dataset if dataset is not None else dataset_name)
    out = wd.report
    out.mkdir(parents=True, exist_ok=True)
    ds = read_json(wd.dataset_json) if wd.dataset_json.is_file() else {"labels": {}}
    names = {v: k for k, v in ds["labels"].items() if isinstance(v, int) and v != 0 and k.lower() != "ignore"}
    summaries = {p.parent.name: read_json(p) for p in sorted((wd.root / "cv").glob("*/summary.json"))}
    selection = read_json(wd.selection) if wd.selection.is_file() else None
    box = ""
    if summaries and names:
        dice_boxplot(summaries, names, out / "dice_boxplot.png")
        box = "<img src='dice_boxplot.png'>"
    sections = [
        ("Dataset fingerprint", _fingerprint_section(wd)),
        ("Plans", _plans_section(wd)),
        ("Training curves", _curves_section(wd, out)),
        ("Cross-validation", _cv_section(summaries, names) + box),
        ("Model selection", _selection_section(selection)),
        ("Best and worst validation case", _overlay_section(selection, wd, Path(dataset) if dataset else None, out)),
    ]
    body = "".join(f"<h2>{_e(title)}</h2>{content}" for title, content in sections)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>segkit report: {_e(wd.root.name)}</title>"
            f"<style>{_CSS}</style></head><body><h1>segkit report: {_e(wd.root.name)}</h1>{body}</body></html>")
    index = out / "index.html"
    with atomic_write_path(index, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index
