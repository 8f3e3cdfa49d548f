"""Per-case table of the selected model's CV predictions, worst first, linked to overlay images.

A case's score is its mean foreground Dice (mean over the classes that are not empty in both
prediction and reference); cases with no scored class (empty-both everywhere) come last. Overlays are
drawn for the ``OVERLAY_CASES`` worst cases and the best one, so a big dataset costs a bounded number
of images; the other rows say so.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np

from toolkit.io.atomic import read_json
from toolkit.io.images import read_image
from toolkit.report.markup import esc, num, table
from toolkit.report.plots import overlay
from toolkit.workdir import WorkDir

OVERLAY_CASES = 10


def case_score(case: dict) -> float:
    """Mean foreground Dice of one per-case entry; NaN when no class is scored."""
    values = [m.get("Dice") for m in case["metrics"].values() if m.get("Dice") is not None]
    return float(np.mean(values)) if values else float("nan")


def worst_first(per_case: list[dict]) -> list[dict]:
    """Per-case entries by ascending mean foreground Dice; unscored cases last, ties by case id."""
    return sorted(per_case, key=lambda c: (math.isnan(case_score(c)), case_score(c), c["case"]))


def _case_folds(wd: WorkDir) -> dict[str, int]:
    if not wd.splits.is_file():
        return {}
    return {case: k for k, split in enumerate(read_json(wd.splits)) for case in split.get("val", [])}


def _volume_ml(case: dict, key: str) -> float | None:
    values = [m.get(key) for m in case["metrics"].values()]
    return sum(values) / 1000.0 if values and all(v is not None for v in values) else None


def _draw(case: dict, dataset: Path, ending: str, names: dict[str, str], path: Path) -> bool:
    """Draw the overlay of one case; False (no image) when an input file is gone."""
    image_file = dataset / "imagesTr" / f"{case['case']}_0000{ending}"
    files = (image_file, Path(case["reference_file"]), Path(case["prediction_file"]))
    if not all(f.is_file() for f in files):
        return False
    image, ref, pred = (read_image(f)[0] for f in files)
    dice = ", ".join(f"{names.get(lb, lb)} {num(m.get('Dice'), 3)}" for lb, m in case["metrics"].items())
    value_names = {int(k): v for k, v in names.items() if k.isdigit()}  # label values; regions are not values
    overlay(image, ref, pred, f"{case['case']}: mean fg Dice {num(case_score(case), 3)} ({dice})", path,
            value_names)
    return True


def _overlays(ordered: list[dict], dataset: Path | None, wd: WorkDir, names: dict[str, str], out: Path) -> dict:
    """Case id -> overlay file name (relative to the report), for the worst cases and the best one."""
    folder = out / "overlays"
    shutil.rmtree(folder, ignore_errors=True)  # stale overlays of an earlier selection must not be linked
    if dataset is None:
        return {}
    folder.mkdir(parents=True)
    ending = read_json(wd.dataset_json)["file_ending"] if wd.dataset_json.is_file() else ".nii.gz"
    scored = [c for c in ordered if not math.isnan(case_score(c))]
    chosen = scored[:OVERLAY_CASES] + scored[-1:]
    drawn = {}
    for case in chosen:
        name = f"{case['case']}.png"
        if case["case"] not in drawn and _draw(case, dataset, ending, names, folder / name):
            drawn[case["case"]] = f"overlays/{name}"
    return drawn


def cases_section(selection: dict | None, wd: WorkDir, dataset: Path | None, names: dict[str, str],
                  out: Path) -> str:
    """The table (all cases, worst first) with links to the overlays that were drawn."""
    if selection is None:
        return "<p class=note>No per-case results yet (segkit select).</p>"
    summary = read_json(wd.root / selection["winner"]["folder"] / "summary.json")
    ordered = worst_first(summary["per_case"])
    drawn = _overlays(ordered, dataset, wd, names, out)
    folds = _case_folds(wd)
    rows = []
    for rank, case in enumerate(ordered, 1):
        link = drawn.get(case["case"])
        metrics = case["metrics"]
        score = case_score(case)
        rows.append([esc(rank), esc(case["case"]), esc(folds.get(case["case"], "-")),
                     num(None if math.isnan(score) else score),
                     *[num(metrics.get(lb, {}).get("Dice")) for lb in names],
                     num(_volume_ml(case, "volume_ref_mm3"), 2), num(_volume_ml(case, "volume_pred_mm3"), 2),
                     f"<a href='{esc(quote(link))}'>overlay</a>" if link else "-"])
    header = ["#", "case", "fold", "mean fg Dice", *[f"Dice {names[lb]}" for lb in names],
              "ref fg ml", "pred fg ml", "overlay"]
    intro = (f"<p class=note>{len(ordered)} cross-validation case(s) of {esc(selection['winner']['name'])}, "
             "before postprocessing, worst first. '-' Dice: class absent from both prediction and reference.")
    if dataset is None:
        intro += " No overlays: the report was built without the dataset folder."
    elif len(ordered) > len(drawn):
        intro += f" Overlays drawn for the {OVERLAY_CASES} worst cases and the best one only."
    worst = next(iter(drawn.values()), None)
    inline = (f"<figure><img class=overlay src='{esc(quote(worst))}' alt='worst case overlay'><figcaption>"
              "The worst case: reference and prediction contours on the slice with the most foreground."
              "</figcaption></figure>") if worst else ""
    return intro + "</p><div class=scroll>" + table(header, rows, cls="cases") + "</div>" + inline
