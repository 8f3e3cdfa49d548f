"""Model selection on hand-made cross-validation outputs where the right answer is known.

Two fake configurations each err on a different half of the organ (predicting lesion there) with
moderate confidence, and are confident elsewhere: each alone is imperfect, their probability
average is exact, so the ensemble must win. Both also predict the same small spurious organ blob,
which the postprocessing must remove.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from toolkit.cli import main
from toolkit.dataset.labels import dataset_label_spec
from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, write_image
from toolkit.selection import choose_best, select
from toolkit.workdir import WorkDir

GEO = Geometry((0.8, 0.8, 2.5), (1.0, -2.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
DS = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "organ": 1, "lesion": 2},
      "numTraining": 5, "file_ending": ".nii.gz"}
CASES = [f"case{i}" for i in range(5)]
SHAPE = (8, 12, 12)


def _truth(i: int) -> np.ndarray:
    ref = np.zeros(SHAPE, np.uint8)
    ref[2:6, 2:8, 2:8] = 1
    ref[3:5, 8:10, 3:3 + i % 3 + 2] = 2          # lesion touching the organ, size varies by case
    return ref


def _probabilities(ref: np.ndarray, wrong_half: str | None, spurious: bool) -> np.ndarray:
    """Confident (0.9) on the truth, except organ voxels of one half: lesion 0.6 / organ 0.4."""
    probs = np.full((3, *SHAPE), 0.05, np.float32)
    for k in range(3):
        probs[k][ref == k] = 0.9
    if wrong_half is not None:
        half = np.zeros(SHAPE, bool)
        half[..., : SHAPE[2] // 2 if wrong_half == "left" else SHAPE[2]] = True
        if wrong_half == "right":
            half[..., : SHAPE[2] // 2] = False
        err = half & (ref == 1)
        probs[:, err] = 0.0
        probs[1][err], probs[2][err] = 0.4, 0.6
    if spurious:
        probs[:, 7, 11, 9:12] = [[0.05], [0.9], [0.05]]
    return probs


def _write_fold_outputs(work: WorkDir, config: str, folds: list[int], wrong_half: str | None,
                        spurious: bool = True) -> None:
    for i, case in enumerate(CASES):
        fold = i % 5
        if fold not in folds:
            continue
        val = work.model(config, fold) / "validation"
        probs = _probabilities(_truth(i), wrong_half, spurious)
        write_image(dataset_label_spec(DS).probabilities_to_seg(probs), GEO, val / f"{case}.nii.gz")
        np.savez_compressed(val / f"{case}.npz", probabilities=probs)
        (val / "summary.json").write_text("{}")


@pytest.fixture
def refs(tmp_path):
    out = {}
    for i, case in enumerate(CASES):
        out[case] = tmp_path / "labelsTr" / f"{case}.nii.gz"
        write_image(_truth(i), GEO, out[case])
    return out


@pytest.fixture
def work(tmp_path) -> WorkDir:
    return WorkDir(tmp_path / "work" / "Dataset999_Fake")


def test_ensemble_wins_and_spurious_component_is_removed(work, refs):
    _write_fold_outputs(work, "3d_fullres", [0, 1, 2, 3, 4], "left")
    _write_fold_outputs(work, "2d", [0, 1, 2, 3, 4], "right")
    result = select(work, refs, DS)
    scores = {c["name"]: c["score"] for c in result["candidates"]}
    assert set(scores) == {"2d", "3d_fullres", "2d+3d_fullres"}
    assert result["winner"]["name"] == "2d+3d_fullres"
    assert result["winner"]["configurations"] == ["2d", "3d_fullres"]
    assert scores["2d+3d_fullres"] > max(scores["2d"], scores["3d_fullres"])
    assert result["complete"] and result["warnings"] == []
    # on disk: the CV folders (hard links of the fold outputs), the ensemble, the summaries
    cv_file = work.cv("2d") / "case3.nii.gz"
    assert os.path.samefile(cv_file, work.model("2d", 3) / "validation" / "case3.nii.gz")
    assert len(json.loads((work.cv("3d_fullres") / "summary.json").read_text())["per_case"]) == 5
    assert len(list(work.ensemble("2d", "3d_fullres").glob("*.nii.gz"))) == 5
    assert json.loads(work.selection.read_text()) == json.loads(json.dumps(result))
    # the only remaining error of the ensemble is the spurious blob: the union step removes it
    pp = result["postprocessing"]
    assert pp["decision"]["keep_largest_foreground"] is True
    assert pp["dice_before"]["1"] < 1.0
    assert pp["dice_after"] == {"1": pytest.approx(1.0), "2": pytest.approx(1.0)}
    assert pp["num_cases"] == 5


def test_tie_goes_to_the_simpler_candidate(work, refs):
    for config in ("3d_lowres", "3d_fullres", "2d"):
        _write_fold_outputs(work, config, [0, 1, 2, 3, 4], "left")
    result = select(work, refs, DS)
    assert len({round(c["score"], 12) for c in result["candidates"]}) == 1   # all equal
    assert len(result["candidates"]) == 6
    assert result["winner"]["name"] == "2d"
    cands = [{"name": n, "configurations": c, "score": 0.8} for n, c in
             (("3d_lowres+3d_fullres", ["3d_fullres", "3d_lowres"]), ("3d_cascade_fullres", ["3d_cascade_fullres"]),
              ("3d_lowres", ["3d_lowres"]))]
    assert choose_best(cands)["name"] == "3d_lowres"
    cands.append({"name": "2d+3d_fullres", "configurations": ["2d", "3d_fullres"], "score": 0.8 + 1e-6})
    assert choose_best(cands)["name"] == "2d+3d_fullres"


def test_missing_folds_are_used_as_they_are_and_reported(work, refs, capsys):
    _write_fold_outputs(work, "2d", [0, 1, 2, 3, 4], "right")
    _write_fold_outputs(work, "3d_fullres", [0, 1, 2], None)     # perfect but only 3 folds
    (work.model("3d_fullres", 4) / "validation").mkdir(parents=True)  # interrupted: no summary.json
    result = select(work, refs, DS)
    assert result["folds"]["3d_fullres"]["present"] == [0, 1, 2]
    assert result["folds"]["3d_fullres"]["missing"] == [3, 4]
    assert result["folds"]["2d"]["missing"] == []
    assert not result["complete"]
    assert result["compared_on_cases"] == 3
    by_name = {c["name"]: c for c in result["candidates"]}
    assert by_name["2d"]["num_cases"] == 5 and by_name["3d_fullres"]["num_cases"] == 3
    assert by_name["2d+3d_fullres"]["num_cases"] == 3
    assert result["winner"]["name"] == "3d_fullres"
    assert result["winner"]["folds"] == {"3d_fullres": [0, 1, 2]}
    err = capsys.readouterr().err
    assert "3d_fullres: fold(s) [3, 4] missing" in err and "different cases" in err
    assert any("missing" in w for w in result["warnings"])


def test_summaries_are_reused_until_the_sources_change(work, refs):
    _write_fold_outputs(work, "2d", [0, 1, 2, 3, 4], "right")
    _write_fold_outputs(work, "3d_fullres", [0, 1, 2, 3, 4], "left")
    select(work, refs, DS)
    summaries = [work.cv("2d") / "summary.json", work.ensemble("2d", "3d_fullres") / "summary.json"]
    stamps = [p.stat().st_mtime_ns for p in summaries]
    select(work, refs, DS)
    assert [p.stat().st_mtime_ns for p in summaries] == stamps
    _write_fold_outputs(work, "2d", [2], None)                    # fold 2 retrained: now perfect there
    result = select(work, refs, DS)
    assert [p.stat().st_mtime_ns for p in summaries] != stamps
    per_case = json.loads(summaries[0].read_text())["per_case"]
    assert next(c for c in per_case if c["case"] == "case2")["metrics"]["2"]["Dice"] == 1.0
    assert result["winner"]["name"] == "2d+3d_fullres"
    # overlap metrics only by default; asking for surface metrics recomputes with HD95 and NSD
    assert "HD95" not in json.loads(summaries[0].read_text())["mean"]["1"]
    select(work, refs, DS, tolerance_mm=2.0)
    summary = json.loads(summaries[0].read_text())
    assert summary["tolerance_mm"] == 2.0 and summary["mean"]["1"]["HD95"] is not None


def test_no_trained_fold_is_a_user_error(work, refs):
    work.root.mkdir(parents=True)
    with pytest.raises(SegkitError, match="no finished validation fold"):
        select(work, refs, DS)


def test_select_command_end_to_end(tmp_path, refs, capsys):
    dataset = tmp_path / "Dataset999_Fake"
    (dataset / "labelsTr").mkdir(parents=True)
    (dataset / "dataset.json").write_text(json.dumps(DS))
    for i, case in enumerate(CASES):
        os.link(refs[case], dataset / "labelsTr" / f"{case}.nii.gz")
        write_image(np.zeros(SHAPE, np.float32) + i, GEO, dataset / "imagesTr" / f"{case}_0000.nii.gz")
    work = WorkDir.for_dataset(tmp_path / "work", dataset)
    _write_fold_outputs(work, "2d", [0, 1, 2, 3, 4], "right")
    _write_fold_outputs(work, "3d_fullres", [0, 1, 2, 3, 4], "left")
    with pytest.raises(SystemExit) as exc:
        main(["select", str(dataset), "--work", str(tmp_path / "work"), "-j", "1"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "2d+3d_fullres" in out and "<- selected" in out and "accepted" in out
    assert json.loads(work.selection.read_text())["winner"]["name"] == "2d+3d_fullres"
    with pytest.raises(SystemExit) as exc:
        main(["select", str(dataset), "--work", str(tmp_path / "elsewhere")])
    assert exc.value.code == 2
