"""Build ``<WORK>/<dataset>/report/index.html`` from what a run left in the work directory.

The first screen answers "which model, how good": the selected configuration or ensemble, its CV
Dice per class (before and after the postprocessing decision), the test-set Dice when a test summary
is given, and every candidate's CV Dice. Then: validation cases worst first (linked overlays), one
training-curve figure per configuration (folds overlaid), the CV table and box plots, postprocessing
steps, dataset fingerprint and plans. Sections whose inputs do not exist yet say so.
Images are PNG files beside ``index.html`` (the report folder is self-contained and static).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.dataset.labels import dataset_label_spec, target_key
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_path, read_json
from toolkit.report.cases import cases_section
from toolkit.report.curves import curves_section
from toolkit.report.markup import esc, num, table
from toolkit.report.plots import dice_boxplot
from toolkit.report.summary import load_test_summary, summary_section
from toolkit.workdir import WorkDir

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:1em;overflow:auto}
img{max-width:100%;border:1px solid #ddd;margin:4px}.sel{background:#e8f6e8;font-weight:bold}.note{color:#666}
.headline{font-size:1.25em}.winner{color:#176a17}.warn{color:#a33}table.dice td{font-size:1.1em}
table.cases td:nth-child(2),table.cases th:nth-child(2){text-align:left}nav a{margin-right:1em}img.overlay{max-width:640px}
.scroll{max-height:32em;overflow:auto;display:inline-block}.scroll th{position:sticky;top:0}"""

_SECTIONS = (("summary", "Summary"), ("cases", "Validation cases, worst first"), ("curves", "Training curves"),
             ("cv", "Cross-validation"), ("selection", "Postprocessing steps"),
             ("fingerprint", "Dataset fingerprint"), ("plans", "Plans"))


def _fingerprint_section(wd: WorkDir) -> str:
    if not wd.fingerprint.is_file():
        return "<p class=note>No fingerprint yet (segkit fingerprint).</p>"
    fp = read_json(wd.fingerprint)
    spacings, shapes = np.asarray(fp["spacings"]), np.asarray(fp["shapes_after_crop"])
    rows = [
        ["cases", esc(len(spacings))],
        ["median spacing (z, y, x) mm", esc(" x ".join(f"{v:.3g}" for v in np.median(spacings, 0)))],
        ["median shape after crop", esc(" x ".join(f"{v:.0f}" for v in np.median(shapes, 0)))],
        ["median relative size after crop", num(fp.get("median_relative_size_after_cropping"), 3)],
    ]
    for ch, props in fp.get("foreground_intensity_properties_per_channel", {}).items():
        stats = ", ".join(f"{k} {num(props.get(k), 2)}" for k in ("mean", "std", "percentile_00_5", "percentile_99_5"))
        rows.append([f"channel {esc(ch)} foreground", esc(stats)])
    return table(["property", "value"], rows)


def _plans_section(wd: WorkDir) -> str:
    if not wd.plans.is_file():
        return "<p class=note>No plans yet (segkit plan).</p>"
    from toolkit.planning.table import format_plans_table

    return f"<pre>{esc(format_plans_table(read_json(wd.plans)))}</pre>"


def _target_names(dataset_json: dict) -> dict[str, str]:
    """Metric key -> name of every evaluated class or region, in output order ({} without usable labels)."""
    try:
        return dataset_label_spec(dataset_json).names_by_key()
    except SegkitError:
        return {}


def _cv_section(summaries: dict[str, dict], names: dict[str, str], out: Path) -> str:
    if not summaries:
        return "<p class=note>No cross-validation results yet (segkit select).</p>"
    header = ["configuration", "cases", *[f"Dice {names[lb]}" for lb in names], "mean fg Dice", "mean fg HD95"]
    rows = []
    for config, s in summaries.items():
        per_class = [num(s["mean"][lb].get("Dice")) for lb in names]
        rows.append([esc(config), esc(len(s["per_case"])), *per_class, num(s["foreground_mean"].get("Dice")),
                     num(s["foreground_mean"].get("HD95"), 2)])
    box = ""
    if names:
        dice_boxplot(summaries, names, out / "dice_boxplot.png")
        box = "<img src='dice_boxplot.png' alt='Dice per case and class'>"
    note = "<p class=note>Each configuration on all of its own CV cases (the summary compares on shared cases).</p>"
    return table(header, rows) + note + box


def _steps_section(selection: dict | None) -> str:
    if selection is None:
        return "<p class=note>No selection yet (segkit select).</p>"
    steps = []
    for st in selection["postprocessing"]["steps"]:
        steps.append([esc(st["step"]), esc(",".join(target_key(lb) for lb in st["labels"])), "yes" if st["accepted"] else "no",
                      num(st["foreground_mean_before"]), num(st["foreground_mean_after"])])
    return ("<p class=note>Decided on the selected model's CV predictions.</p>"
            + table(["postprocessing step", "labels", "accepted", "fg Dice before", "fg Dice after"], steps))


def build_report(dataset: str | Path | None, work: str | Path | None, dataset_name: str | None = None,
                 test_summary: str | Path | None = None) -> Path:
    """Write the report folder and return the path of ``index.html``.

    ``test_summary``: a ``segkit evaluate`` summary.json of test-set predictions (the work directory
    does not know the test set); without it the report says that no test-set result is known.
    """
    wd = WorkDir.for_dataset(work, dataset if dataset is not None else dataset_name)
    test = load_test_summary(test_summary) if test_summary is not None else None
    out = wd.report
    out.mkdir(parents=True, exist_ok=True)
    ds = read_json(wd.dataset_json) if wd.dataset_json.is_file() else {"labels": {}}
    names = _target_names(ds)
    summaries = {p.parent.name: read_json(p) for p in sorted((wd.root / "cv").glob("*/summary.json"))}
    selection = read_json(wd.selection) if wd.selection.is_file() else None
    content = {
        "summary": summary_section(selection, names, wd.root, test, Path(test_summary) if test_summary else None),
        "cases": cases_section(selection, wd, Path(dataset) if dataset else None, names, out),
        "curves": curves_section(wd.root / "models", out),
        "cv": _cv_section(summaries, names, out),
        "selection": _steps_section(selection),
        "fingerprint": _fingerprint_section(wd),
        "plans": _plans_section(wd),
    }
    nav = "<nav>" + "".join(f"<a href='#{key}'>{esc(title)}</a>" for key, title in _SECTIONS[1:]) + "</nav>"
    body = "".join(f"<h2 id={key}>{esc(title)}</h2>{content[key]}" for key, title in _SECTIONS)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>segkit report: {esc(wd.root.name)}</title>"
            f"<style>{_CSS}</style></head><body><h1>segkit report: {esc(wd.root.name)}</h1>{nav}{body}"
            "</body></html>")
    index = out / "index.html"
    with atomic_write_path(index, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return index
