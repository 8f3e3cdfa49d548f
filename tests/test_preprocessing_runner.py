"""Dataset-level preprocessing: storage, resume, overwrite, failing cases, parallel workers, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _preprocessing_helpers import make_plans, write_dataset

from toolkit.cli import main
from toolkit.preprocessing.runner import preprocess_dataset
from toolkit.preprocessing.storage import case_done, list_cases, load_case, save_case


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "Dataset001_Synth", 3, (16, 32, 32), (2.0, 1.0, 1.0))


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_storage_round_trip_and_markers(tmp_path):
    data = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    seg = np.arange(60, dtype=np.int16).reshape(1, 3, 4, 5)
    save_case(tmp_path, "a", data, seg, {"k": [1, 2]})
    save_case(tmp_path, "b", data, None, {})
    (tmp_path / ".a.json.partial.tmp.json").write_text("{}")  # a leftover temp file is ignored
    assert list_cases(tmp_path) == ["a", "b"] and case_done(tmp_path, "a") and not case_done(tmp_path, "c")
    d, s, p = load_case(tmp_path, "a")
    assert isinstance(d, np.memmap) and np.array_equal(d, data) and np.array_equal(s, seg) and p == {"k": [1, 2]}
    assert load_case(tmp_path, "b", mmap=False)[1] is None


def test_resume_skips_finished_and_overwrite_is_identical(dataset, tmp_path):
    plans = make_plans((2.0, 1.5, 1.5))
    out = tmp_path / "pre"
    first = preprocess_dataset(dataset, plans, ["3d_fullres", "3d_cascade_fullres"], out, progress=False)
    folder = out / "3d_fullres"
    assert first["done"] == 3 and not first["failed"] and list_cases(folder) == ["case000", "case001", "case002"]
    assert first["folders"]["3d_cascade_fullres"] == folder  # shares the fullres data
    before = _snapshot(folder)
    (folder / "case001.json").unlink()  # as if interrupted before the marker was written
    again = preprocess_dataset(dataset, plans, ["3d_fullres"], out, progress=False)
    assert again["done"] == 1 and again["skipped"] == 2
    after = _snapshot(folder)
    assert after["case000.npy"] == before["case000.npy"]  # untouched, same mtime
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    preprocess_dataset(dataset, plans, ["3d_fullres"], out, overwrite=True, progress=False)
    rewritten = _snapshot(folder)
    assert {k: v[0] for k, v in rewritten.items()} == {k: v[0] for k, v in before.items()}
    assert rewritten["case000.npy"][1] != before["case000.npy"][1]


def test_failing_case_does_not_stop_the_others(dataset, tmp_path):
    (dataset / "labelsTr" / "case001.nii.gz").write_bytes(b"not an image")
    out = tmp_path / "pre"
    result = preprocess_dataset(dataset, make_plans((2.0, 1.5, 1.5)), ["3d_fullres"], out, progress=False)
    assert list_cases(out / "3d_fullres") == ["case000", "case002"]
    assert [(o.job.case_id, o.user_error) for o in result["failed"]] == [("case001", True)]
    assert "unreadable" in result["failed"][0].error


def test_parallel_workers_match_serial(dataset, tmp_path):
    plans = make_plans((2.0, 1.5, 1.5))
    preprocess_dataset(dataset, plans, ["3d_fullres"], tmp_path / "serial", workers=1, progress=False)
    preprocess_dataset(dataset, plans, ["3d_fullres"], tmp_path / "pool", workers=2, progress=False)
    for case in ("case000", "case001", "case002"):
        a, b = load_case(tmp_path / "serial/3d_fullres", case), load_case(tmp_path / "pool/3d_fullres", case)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def _cli(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    return exc.value.code, capsys.readouterr()


def test_cli_preprocess(dataset, tmp_path, capsys):
    work = tmp_path / "work"
    code, io = _cli(["preprocess", str(dataset), "--work", str(work)], capsys)
    assert code == 2 and "plans.json: plans not found" in io.err and "segkit plan" in io.err
    assert len(io.err.strip().splitlines()) == 1
    plans_path = work / dataset.name / "plans.json"
    plans_path.parent.mkdir(parents=True)
    plans_path.write_text(json.dumps(make_plans((2.0, 1.5, 1.5))))
    (dataset / "labelsTr" / "case002.nii.gz").write_bytes(b"garbage")
    code, io = _cli(["preprocess", str(dataset), "--work", str(work), "-c", "3d_fullres", "-j", "1"], capsys)
    assert code == 2 and "case case002" in io.err
    assert io.out.strip().split("\t")[0] == "3d_fullres" and io.out.strip().endswith("2 cases")
