"""segkit run / export / predict -m BUNDLE / report, on a tiny phantom run (CPU, about two minutes).

Training is a few iterations: these tests check the machinery (resume, selection with an ensemble,
bundle round trip and tamper refusal, geometry), not learning; tests/test_learning_hippocampus.py
checks learning on real data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from phantom_helpers import SHORT_DEMO_RUN, dice, dice_on_test_set, tiny_phantom_two_folds

from toolkit.cli import cli
from toolkit.io.images import read_image

pytestmark = pytest.mark.slow  # the shared short demo run and a killed/resumed run: minutes on 2 cores

TINY = ["--epochs", "1", "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
        "-j", "1"]


# ---- the tests' own model selection, from the files (docs/method.md 1.4): no toolkit.selection or evaluation ----
CONFIGS = ("2d", "3d_fullres")  # simplest first


def _cv_labels(wd, config: str) -> tuple[dict, dict]:
    """Case -> validation label map and case -> probabilities, over the folds of one configuration."""
    labels, probs = {}, {}
    for path in sorted((wd / "models" / config).glob("fold_*/validation/*.nii.gz")):
        case = path.name[: -len(".nii.gz")]
        labels[case] = read_image(path)[0]
        with np.load(path.with_name(f"{case}.npz")) as npz:
            probs[case] = npz["probabilities"].astype(np.float32)
    return labels, probs


def _mean_foreground_dice(preds: dict, refs: dict) -> float:
    """Mean over classes 1, 2 of the mean per-case Dice, cases where both are empty excluded."""
    per_class = []
    for label in (1, 2):
        values = [d for case in preds if (d := dice(preds[case], refs[case], label)) is not None]
        per_class.append(float(np.mean(values)))
    return float(np.mean(per_class))


def _recomputed_cv_scores(ds, wd) -> dict[str, float]:
    """Each configuration's and the pairwise ensemble's CV score, recomputed from the saved predictions."""
    cv = {config: _cv_labels(wd, config) for config in CONFIGS}
    refs = {case: read_image(ds / "labelsTr" / f"{case}.nii.gz")[0] for case in cv["2d"][0]}
    assert sorted(refs) == [f"phantom_{i:03d}" for i in range(6)] and all(sorted(cv[c][0]) == sorted(refs)
                                                                             for c in CONFIGS)
    scores = {config: _mean_foreground_dice(cv[config][0], refs) for config in CONFIGS}
    ensemble = {case: np.argmax((cv["2d"][1][case] + cv["3d_fullres"][1][case]) / 2, axis=0) for case in refs}
    scores["2d+3d_fullres"] = _mean_foreground_dice(ensemble, refs)
    return scores


def _best_then_simplest(scores: dict[str, float]) -> str:
    """The best score; a tie goes to the simpler candidate (single before ensemble, 2d before 3d_fullres)."""
    order = [*CONFIGS, "2d+3d_fullres"]
    best = max(scores.values())
    return next(name for name in order if scores[name] >= best - 1e-12)


@pytest.fixture(scope="module")
def finished_run(short_demo):
    """Both planned configurations (2d, 3d_fullres), two folds, selection: the short demo's run."""
    return short_demo["dataset"], short_demo["work"], short_demo["output"]


def test_run_selects_among_singles_and_ensemble(finished_run):
    ds, work, output = finished_run
    wd = work / ds.name
    selection = json.loads((wd / "selection.json").read_text())
    names = {c["name"] for c in selection["candidates"]}
    assert names == {"2d", "3d_fullres", "2d+3d_fullres"}
    scores = _recomputed_cv_scores(ds, wd)
    for cand in selection["candidates"]:
        assert cand["score"] == pytest.approx(scores[cand["name"]], abs=1e-9), (cand, scores)
    assert selection["winner"]["name"] == _best_then_simplest(scores), (selection["winner"], scores)
    assert all(selection["folds"][c]["present"] == [0, 1] for c in ("2d", "3d_fullres"))
    assert "selected:" in output and "CV mean fg Dice" in output
    for config in ("2d", "3d_fullres"):
        for k in (0, 1):
            fold = wd / "models" / config / f"fold_{k}"
            assert (fold / "checkpoint_final.pt").is_file() and (fold / "progress.png").is_file()
            assert json.loads((fold / "validation" / "summary.json").read_text())["per_case"]


def test_run_again_skips_everything(finished_run):
    ds, work, _ = finished_run
    ckpt = work / ds.name / "models" / "3d_fullres" / "fold_0" / "checkpoint_final.pt"
    before = ckpt.stat().st_mtime_ns
    result = CliRunner().invoke(cli, ["run", str(ds), "--work", str(work), *SHORT_DEMO_RUN])
    assert result.exit_code == 0, result.output
    assert "0:done" in result.output and ckpt.stat().st_mtime_ns == before


def test_bundle_round_trip_and_geometry(finished_run, tmp_path):
    ds, work, _ = finished_run
    bundle, out = tmp_path / "bundle", tmp_path / "pred"
    runner = CliRunner()
    assert runner.invoke(cli, ["export", str(ds), "--work", str(work), "-o", str(bundle)]).exit_code == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    selection = json.loads((work / ds.name / "selection.json").read_text())
    assert manifest["configurations"] == selection["winner"]["configurations"]
    result = runner.invoke(cli, ["predict", "-m", str(bundle), "-i", str(ds / "imagesTs"), "-o", str(out),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for img in sorted((ds / "imagesTs").glob("*_0000.nii.gz")):
        case = img.name[: -len("_0000.nii.gz")]
        pred, geo = read_image(out / f"{case}.nii.gz")
        ref, ref_geo = read_image(img)
        assert pred.shape == ref.shape and geo == ref_geo
    # the bundle segments the organ of both held-out cases (measured: Dice 0.971 and 0.927)
    scores = dice_on_test_set(out, ds)
    assert sorted(scores) == ["phantom_006", "phantom_007"] and all(s[1] >= 0.8 for s in scores.values()), scores


@pytest.mark.parametrize("tamper", ["modify", "add", "remove"])
def test_tampered_bundle_is_refused(finished_run, tmp_path, tamper):
    ds, work, _ = finished_run
    bundle = tmp_path / "bundle"
    assert CliRunner().invoke(cli, ["export", str(ds), "--work", str(work), "-o", str(bundle)]).exit_code == 0
    ckpt = next(bundle.glob("models/*/fold_0/checkpoint_final.pt"))
    if tamper == "modify":
        data = bytearray(ckpt.read_bytes())
        data[len(data) // 2] ^= 0xFF
        ckpt.write_bytes(bytes(data))
    elif tamper == "add":
        (bundle / "models" / "extra.py").write_text("print('hi')\n")
    else:
        ckpt.unlink()
    result = CliRunner().invoke(cli, ["predict", "-m", str(bundle), "-i", str(ds / "imagesTs"),
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_export_refuses_non_empty_output(finished_run, tmp_path):
    ds, work, _ = finished_run
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("keep me")
    result = CliRunner().invoke(cli, ["export", str(ds), "--work", str(work), "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and (tmp_path / "b" / "x").read_text() == "keep me"


def test_report_has_every_section(finished_run):
    ds, work, _ = finished_run
    result = CliRunner().invoke(cli, ["report", str(ds), "--work", str(work)])
    assert result.exit_code == 0, result.output
    report = work / ds.name / "report"
    page = (report / "index.html").read_text(encoding="utf-8")
    titles = ("Summary", "Validation cases, worst first", "Training curves", "Cross-validation",
              "Postprocessing steps", "Dataset fingerprint", "Plans")
    positions = [page.index(f">{title}</h2>") for title in titles]
    assert positions == sorted(positions)
    winner = json.loads((work / ds.name / "selection.json").read_text(encoding="utf-8"))["winner"]
    assert f"Selected: <b class=winner>{winner['name']}</b>" in page[: positions[1]]
    assert f"{winner['score']:.4f}" in page[: positions[1]]
    # one figure per configuration, its fold logs read from the real (memory-mapped) checkpoints
    for png in ("dice_boxplot.png", "curves_2d.png", "curves_3d_fullres.png"):
        assert (report / png).stat().st_size > 1000
        assert page.count(png) == 1
    assert "2d: fold 0: 3 epoch(s)" in page and "fold 1: 3 epoch(s)" in page  # the short demo: 3 epochs
    overlays = sorted((report / "overlays").glob("*.png"))
    assert len(overlays) == 6 and all(f"overlays/{p.name}" in page for p in overlays)


def test_run_resumes_after_kill(tmp_path):
    """SIGTERM during fold 1 keeps fold 0; the second run skips it and finishes fold 1."""
    ds, work = tiny_phantom_two_folds(tmp_path / "raw"), tmp_path / "work"
    args = [sys.executable, "-m", "toolkit.cli", "run", str(ds), "--work", str(work), "-c", "3d_fullres",
            *TINY[:-2], "-j", "1", "--epochs", "3", "--no-select"]
    fold0 = work / ds.name / "models" / "3d_fullres" / "fold_0" / "validation" / "summary.json"
    fold1_log = work / ds.name / "models" / "3d_fullres" / "fold_1" / "training_log.txt"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if fold0.is_file() and fold1_log.is_file() and "epoch 1/3" in fold1_log.read_text():
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0, output
    fold0_ckpt = fold0.parent.parent / "checkpoint_final.pt"
    stamp = fold0_ckpt.stat().st_mtime_ns
    assert (fold1_log.parent / "checkpoint_latest.pt").is_file()
    assert not (fold1_log.parent / "checkpoint_final.pt").exists()
    again = subprocess.run(args, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=900)
    assert again.returncode == 0, again.stderr
    assert "0:done" in again.stdout and "1:resumed" in again.stdout
    assert fold0_ckpt.stat().st_mtime_ns == stamp
    assert "resumed from" in fold1_log.read_text()


def test_plain_train_command_ends_with_validation(tmp_path):
    """`segkit train` without --skip-validation predicts the fold's validation cases against the raw labels."""
    ds, work = tiny_phantom_two_folds(tmp_path / "raw"), tmp_path / "work"
    runner = CliRunner()
    for args in (["fingerprint"], ["plan"], ["preprocess", "-c", "3d_fullres", "-j", "1"]):
        result = runner.invoke(cli, [args[0], str(ds), "--work", str(work), *args[1:]])
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["train", str(ds), "-c", "3d_fullres", "-f", "1", "--work", str(work), *TINY[:-2]])
    assert result.exit_code == 0, result.output
    summary = json.loads((work / ds.name / "models" / "3d_fullres" / "fold_1" / "validation" / "summary.json")
                         .read_text(encoding="utf-8"))
    assert sorted(c["case"] for c in summary["per_case"]) == ["phantom_001", "phantom_003", "phantom_005"]
