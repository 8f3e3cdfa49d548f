"""folder adapter (generic) and the convert/submission commands end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from challenge_helpers import convert_checked, groups, snapshot, write_raw

from toolkit.cli import main
from toolkit.io.images import read_image

SPACING, ORIGIN = (0.8, 0.8, 3.0), (10.0, -4.0, 2.5)


def test_folder_on_real_nrrd_pairs(shared_data, tmp_path):
    raw = shared_data / "pyradiomics_nrrd"
    out = tmp_path / "Dataset900_Brain"
    ds = convert_checked("folder", raw, out, image_dir="data", label_dir="data", channel_names=["MRI"],
                         labels={"background": 0, "roi": 1}, image_pattern=r"(?P<case>brain\d)_image\.nrrd",
                         label_pattern=r"(?P<case>brain\d)_label\.nrrd")
    assert ds["numTraining"] == 2
    for case in ("brain1", "brain2"):
        src, src_geo = read_image(raw / "data" / f"{case}_label.nrrd")
        label, geo = read_image(out / "labelsTr" / f"{case}.nii.gz")
        assert src.dtype == np.int32 and label.dtype == np.uint8 and np.array_equal(label, src)
        assert geo.differs_from(src_geo, rel_tol=1e-6, dir_tol=1e-7) is None


def _multichannel_raw(raw: Path, rng) -> dict:
    truth = {}
    for case in ("sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1"):
        t1 = rng.integers(0, 500, (4, 8, 9)).astype(np.int16)
        t2 = rng.integers(0, 500, (4, 8, 9)).astype(np.int16)
        write_raw(raw / "img" / f"{case}_t1.nii.gz", t1, SPACING, ORIGIN)
        write_raw(raw / "img" / f"{case}_t2.nii.gz", t2, SPACING, ORIGIN)
        label = rng.integers(0, 3, (4, 8, 9)).astype(np.uint8)
        write_raw(raw / "seg" / f"{case}_seg.nii.gz", label, SPACING, ORIGIN)
        truth[case] = (t1, t2, label)
    write_raw(raw / "test" / "sub-09_ses-1_t1.nii.gz", t1, SPACING, ORIGIN)
    write_raw(raw / "test" / "sub-09_ses-1_t2.nii.gz", t2, SPACING, ORIGIN)
    (raw / "config.yaml").write_text(
        "channel_names: [T1, T2]\nlabels: {background: 0, grey: 1, white: 2}\nimage_dir: img\nlabel_dir: seg\n"
        "test_dir: test\nimage_pattern: '(?P<case>.+)_(?P<channel>t1|t2)\\.nii\\.gz'\nchannel_keys: [t1, t2]\n"
        "label_pattern: '(?P<case>.+)_seg\\.nii\\.gz'\ngroup_pattern: '(?P<group>sub-\\d+)_.*'\n")
    return truth


def test_cli_convert_and_submission_with_options(tmp_path, capsys):
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    truth = _multichannel_raw(raw, rng)
    before = snapshot(raw)
    out = tmp_path / "Dataset901_Multi"
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "folder", str(raw), str(out), "--config", str(raw / "config.yaml"), "-O", "name=Multi"])
    assert exit_.value.code == 0
    assert "3 training cases (2 patients), 1 test cases" in capsys.readouterr().out
    assert snapshot(raw) == before
    assert json.loads((out / "dataset.json").read_text())["channel_names"] == {"0": "T1", "1": "T2"}
    assert groups(out) == {"sub-01_ses-1": "sub-01", "sub-01_ses-2": "sub-01", "sub-02_ses-1": "sub-02"}
    for case, (t1, t2, label) in truth.items():
        assert np.array_equal(read_image(out / "imagesTr" / f"{case}_0000.nii.gz")[0], t1)
        assert np.array_equal(read_image(out / "imagesTr" / f"{case}_0001.nii.gz")[0], t2)
        assert np.array_equal(read_image(out / "labelsTr" / f"{case}.nii.gz")[0], label)
    # second run into the same non-empty folder: one-line error, exit code 2
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "folder", str(raw), str(out), "--config", str(raw / "config.yaml")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "not empty (use --overwrite" in err
    # submission: predictions named like the canonical test cases come back under the challenge's names
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "sub-09_ses-1.nii.gz").write_bytes((out / "labelsTr" / "sub-01_ses-1.nii.gz").read_bytes())
    with pytest.raises(SystemExit) as exit_:
        main(["submission", "folder", str(pred), str(tmp_path / "sub"), "-O", "submission.name={case}_pred.nii.gz"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "sub" / "sub-09_ses-1_pred.nii.gz")


def test_cli_list_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "--list"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == sorted(["decathlon", "kits19", "acdc", "lits", "bcv", "promise12", "msles", "chaos",
                             "segthor", "cremi", "folder"])
    (tmp_path / "raw" / "images").mkdir(parents=True)
    (tmp_path / "raw" / "labels").mkdir()
    for argv, expected in ((["convert", "nosuch", "a", "b"], "unknown challenge 'nosuch'"),
                           (["convert", "folder", str(tmp_path / "raw"), str(tmp_path / "o")], "needs channel_names"),
                           (["convert", "folder", str(tmp_path / "raw"), str(tmp_path / "o"), "-O", "oops"],
                            "must look like KEY=VALUE")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and expected in err and err.count("\n") == 1, err
