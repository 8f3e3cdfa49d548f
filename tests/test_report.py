"""`segkit report` on a work directory built without training: real selection on damaged references.

Predictions are the reference labels with a different fraction of foreground removed per case, so the
cases have distinct Dice; selection (toolkit.selection) writes selection.json and the CV summaries the
report reads, and each fold gets a small checkpoint holding only training logs.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.evaluation.evaluate import evaluate_folder
from toolkit.io.images import read_image, write_image
from toolkit.selection.select import select_for_dataset

DAMAGE = {"2d": [0.6, 0.3, 0.8, 0.2, 0.5, 0.4, 0.7, 0.35], "3d_fullres": [0.5, 0.1, 0.7, 0.0, 0.3, 0.2, 0.6, 0.25]}


def _damaged(ref: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The reference with ``fraction`` of its foreground voxels set to background."""
    pred = ref.copy()
    fg = np.flatnonzero(pred)
    drop = np.random.default_rng(seed).choice(fg, int(round(fraction * fg.size)), replace=False)
    pred.flat[drop] = 0
    return pred


def _logs(epochs: int, offset: float) -> dict[str, list]:
    return {"train_loss": [1.0 - 0.1 * e - offset for e in range(epochs)],
            "val_loss": [1.1 - 0.1 * e - offset for e in range(epochs)],
            "pseudo_dice": [[0.1 * e, 0.05 * e] for e in range(epochs)],
            "mean_fg_dice": [0.075 * e for e in range(epochs)], "ema_fg_dice": [0.07 * e for e in range(epochs)],
            "lr": [0.01] * epochs, "epoch_time": [1.0] * epochs}


@pytest.fixture(scope="module")
def selected(phantom_dataset, tmp_path_factory):
    """(dataset, work, work dir of the dataset) after selection between 2d and 3d_fullres, two folds."""
    ds, work = phantom_dataset, tmp_path_factory.mktemp("report") / "work"
    wd = work / ds.name
    wd.mkdir(parents=True)
    shutil.copy(ds / "dataset.json", wd / "dataset.json")
    cases = sorted(p.name[: -len(".nii.gz")] for p in (ds / "labelsTr").glob("*.nii.gz"))
    splits = [{"train": [c for j, c in enumerate(cases) if j % 2 != k], "val": cases[k::2]} for k in range(2)]
    (wd / "splits_final.json").write_text(json.dumps(splits))
    for config, damage in DAMAGE.items():
        for k, split in enumerate(splits):
            fold = wd / "models" / config / f"fold_{k}"
            (fold / "validation").mkdir(parents=True)
            for case in split["val"]:
                ref, geo = read_image(ds / "labelsTr" / f"{case}.nii.gz")
                i = cases.index(case)
                write_image(_damaged(ref, damage[i], i), geo, fold / "validation" / f"{case}.nii.gz")
            (fold / "validation" / "summary.json").write_text("{}")
            torch.save({"logs": _logs(3 + k, 0.05 * k)}, fold / "checkpoint_final.pt")
    select_for_dataset(ds, work)
    return ds, work, wd


def _report(ds: Path, work: Path, *extra: str) -> str:
    result = CliRunner().invoke(cli, ["report", str(ds), "--work", str(work), *extra])
    assert result.exit_code == 0, result.output
    return (work / ds.name / "report" / "index.html").read_text(encoding="utf-8")


def _section(page: str, key: str) -> str:
    start = page.index(f"<h2 id={key}>")
    end = page.find("<h2 ", start + 1)
    return page[start:end if end >= 0 else None]


def test_summary_comes_first_and_names_the_winner_with_its_cv_dice(selected):
    ds, work, wd = selected
    page = _report(ds, work)
    selection = json.loads((wd / "selection.json").read_text(encoding="utf-8"))
    winner = selection["winner"]["name"]
    assert winner == "3d_fullres"  # less damage than 2d
    summary = _section(page, "summary")
    assert page.index("<h2 id=summary>") < page.index("curves_") and page.index("<h2") == page.index("<h2 id=summary>")
    assert f"Selected: <b class=winner>{winner}</b>" in summary
    cand = next(c for c in selection["candidates"] if c["name"] == winner)
    cv_dice = json.loads((wd / "cv" / winner / "summary.json").read_text(encoding="utf-8"))["mean"]
    for label in ("1", "2"):
        assert cand["dice_per_class"][label] == pytest.approx(cv_dice[label]["Dice"])
        assert f"{cand['dice_per_class'][label]:.4f}" in summary
        assert f"{selection['postprocessing']['dice_after'][label]:.4f}" in summary
    assert f"{selection['winner']['score']:.4f}" in summary
    assert "No test-set result known" in summary
    for c in selection["candidates"]:  # the compact candidate table
        assert f"<td>{c['name']}</td>" in summary and f"{c['score']:.4f}" in summary


def test_test_summary_is_shown_in_the_summary(selected, tmp_path):
    ds, work, _ = selected
    for i, ref_file in enumerate(sorted((ds / "labelsTs").glob("*.nii.gz"))):
        ref, geo = read_image(ref_file)
        write_image(_damaged(ref, 0.15 * (i + 1), i), geo, tmp_path / "pred" / ref_file.name)
    test = evaluate_folder(tmp_path / "pred", ds / "labelsTs", ds / "dataset.json",
                           output=tmp_path / "pred" / "summary.json", surface_metrics=False)
    summary = _section(_report(ds, work, "--test-summary", str(tmp_path / "pred" / "summary.json")), "summary")
    assert "No test-set result known" not in summary and "test Dice" in summary
    for label in ("1", "2"):
        assert f"{test['mean'][label]['Dice']:.4f}" in summary
    assert f"test set <b>{test['foreground_mean']['Dice']:.4f}</b> on 2 case(s)" in summary


def test_bad_test_summary_is_a_one_line_error(selected, tmp_path):
    ds, work, _ = selected
    bad = tmp_path / "summary.json"
    bad.write_text(json.dumps({"per_case": []}))
    result = CliRunner().invoke(cli, ["report", str(ds), "--work", str(work), "--test-summary", str(bad)])
    assert result.exit_code == 2 and str(bad) in result.output and "not a segkit evaluate summary" in result.output


def _rows(page: str) -> list[tuple[str, str | None]]:
    """(case, overlay link or None) per row of the per-case table, in page order."""
    cases = _section(page, "cases")
    body = cases[cases.index("<table class=cases>"):cases.index("</table>")]
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body)[1:]:
        cells = re.findall(r"<td>(.*?)</td>", row)
        link = re.search(r"href='([^']+)'", cells[-1])
        rows.append((cells[1], link.group(1) if link else None))
    return rows


def test_case_table_is_worst_first_and_links_existing_overlays(selected, monkeypatch):
    ds, work, wd = selected
    monkeypatch.setattr("toolkit.report.cases.OVERLAY_CASES", 3)
    rows = _rows(_report(ds, work))
    per_case = json.loads((wd / "cv" / "3d_fullres" / "summary.json").read_text(encoding="utf-8"))["per_case"]

    def score(c):
        values = [m["Dice"] for m in c["metrics"].values() if m["Dice"] is not None]
        return sum(values) / len(values) if values else math.inf

    expected = [c["case"] for c in sorted(per_case, key=score)]
    assert [case for case, _ in rows] == expected and len(set(map(score, per_case))) == len(per_case)
    linked = [case for case, link in rows if link]
    assert linked == expected[:3] + expected[-1:]  # the 3 worst and the best
    for case, link in rows:
        if link:
            assert link == f"overlays/{case}.png" and (wd / "report" / link).stat().st_size > 1000
    assert len(list((wd / "report" / "overlays").glob("*.png"))) == 4


def test_one_curve_figure_per_configuration(selected):
    ds, work, wd = selected
    page = _report(ds, work)
    curves = _section(page, "curves")
    for config in ("2d", "3d_fullres"):
        assert page.count(f"curves_{config}.png") == 1 and f"curves_{config}.png" in curves
        assert (wd / "report" / f"curves_{config}.png").stat().st_size > 1000
        assert f"{config}: fold 0: 3 epoch(s)" in curves and "fold 1: 4 epoch(s)" in curves
    assert not list((wd / "report").glob("curves_*_fold_*.png"))


def test_unreadable_checkpoint_costs_one_curve_and_is_said(tmp_path):
    from toolkit.report.curves import curves_section, read_fold_logs

    models = tmp_path / "models"
    for k in range(2):
        (models / "2d" / f"fold_{k}").mkdir(parents=True)
    torch.save({"logs": _logs(2, 0.0)}, models / "2d" / "fold_0" / "checkpoint_latest.pt")
    (models / "2d" / "fold_1" / "checkpoint_final.pt").write_bytes(b"not a checkpoint")
    assert read_fold_logs(models / "2d" / "fold_0")["train_loss"] == _logs(2, 0.0)["train_loss"]
    assert read_fold_logs(tmp_path) is None
    with pytest.raises(ValueError, match="checkpoint_final.pt"):
        read_fold_logs(models / "2d" / "fold_1")
    (tmp_path / "out").mkdir()
    html = curves_section(models, tmp_path / "out")
    assert "2d: fold 0: 2 epoch(s)" in html and "fold 1:" not in html.split("</figure>")[0]
    assert "2d fold_1: no training logs in checkpoint_final.pt" in html
    assert (tmp_path / "out" / "curves_2d.png").is_file()


def test_region_dataset_is_selected_and_reported_per_region(phantom_dataset, tmp_path):
    """A region dataset's CV summaries, selection and report are keyed per region (nnU-Net's "(1, 2)")."""
    ds = tmp_path / "Dataset998_Regions"
    shutil.copytree(phantom_dataset, ds)
    meta = json.loads((ds / "dataset.json").read_text(encoding="utf-8"))
    meta["labels"] = {"background": 0, "whole": [1, 2], "lesion": 2}
    meta["regions_class_order"] = [1, 2]
    (ds / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    work = tmp_path / "work"
    wd = work / ds.name
    cases = sorted(p.name[: -len(".nii.gz")] for p in (ds / "labelsTr").glob("*.nii.gz"))
    wd.mkdir(parents=True)
    shutil.copy(ds / "dataset.json", wd / "dataset.json")
    splits = [{"train": [c for j, c in enumerate(cases) if j % 2 != k], "val": cases[k::2]} for k in range(2)]
    (wd / "splits_final.json").write_text(json.dumps(splits))
    for k, split in enumerate(splits):
        val = wd / "models" / "3d_fullres" / f"fold_{k}" / "validation"
        val.mkdir(parents=True)
        for case in split["val"]:
            ref, geo = read_image(ds / "labelsTr" / f"{case}.nii.gz")
            pred = np.where(ref == 2, 1, ref).astype(np.uint8) if cases.index(case) % 3 == 0 else ref
            write_image(pred, geo, val / f"{case}.nii.gz")  # every third case: lesion predicted as organ
        (val / "summary.json").write_text("{}")
    result = select_for_dataset(ds, work)
    cand = result["candidates"][0]
    assert set(cand["dice_per_class"]) == {"(1, 2)", "2"} and cand["dice_per_class"]["(1, 2)"] == pytest.approx(1.0)
    assert cand["dice_per_class"]["2"] < 1.0 and "regions" in result["metric"]
    summary = json.loads((wd / "cv" / "3d_fullres" / "summary.json").read_text(encoding="utf-8"))
    assert summary["labels"] == {"(1, 2)": "whole", "2": "lesion"}
    page = _section(_report(ds, work), "summary")
    assert "(1, 2) whole" in page and f"{cand['dice_per_class']['2']:.4f}" in page
