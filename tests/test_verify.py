"""segkit verify: a valid dataset passes; each single corruption is caught with a line naming the file."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from toolkit.dataset.verify import check_dataset, verify_dataset
from toolkit.io.images import Geometry, read_image, write_image


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path.write_text(json.dumps(data))


def _rewrite(path: Path, fn) -> None:
    array, geo = read_image(path)
    array, geo = fn(array, geo)
    write_image(array, geo, path)


def _img(root: Path, case: str = "phantom_001", ch: int = 0) -> Path:
    return root / "imagesTr" / f"{case}_{ch:04d}.nii.gz"


def _lab(root: Path, case: str = "phantom_001") -> Path:
    return root / "labelsTr" / f"{case}.nii.gz"


def _add_channel(root: Path, fn=None) -> None:
    """Make the dataset two-channel (a copy of channel 0), optionally altering one case's channel 1."""
    _edit_json(root / "dataset.json", channel_names={"0": "MRI", "1": "T2"})
    for p in sorted((root / "imagesTr").glob("*_0000.nii.gz")):
        shutil.copy(p, p.with_name(p.name.replace("_0000", "_0001")))
    if fn is not None:
        _rewrite(_img(root, ch=1), fn)


def _shift_origin(a, g):
    return a, Geometry(g.spacing_xyz, tuple(o + 5.0 for o in g.origin_xyz), g.direction)


def _scale_spacing(a, g):
    return a, Geometry(tuple(s * 1.1 for s in g.spacing_xyz), g.origin_xyz, g.direction)


def _flip_direction(a, g):
    d = list(g.direction)
    d[0] = -1.0
    return a, Geometry(g.spacing_xyz, g.origin_xyz, tuple(d))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _to_2d(root: Path) -> None:
    array, g = read_image(_img(root))
    geo2 = Geometry(g.spacing_xyz[:2], g.origin_xyz[:2], (1.0, 0.0, 0.0, 1.0))
    write_image(array[array.shape[0] // 2], geo2, _img(root))
    label, _ = read_image(_lab(root))
    write_image(label[label.shape[0] // 2], geo2, _lab(root))


def _escape_path(root: Path) -> None:
    data = json.loads((root / "dataset.json").read_text())
    data["dataset"] = {"phantom_000": {"images": ["../outside_0000.nii.gz"], "label": "labelsTr/phantom_000.nii.gz"}}
    data["numTraining"] = 1
    (root / "dataset.json").write_text(json.dumps(data))


def _duplicate_key(root: Path) -> None:
    entry = '{"images": ["imagesTr/phantom_000_0000.nii.gz"], "label": "labelsTr/phantom_000.nii.gz"}'
    text = (root / "dataset.json").read_text().rstrip().rstrip("}")
    text = text.replace('"numTraining": 8', '"numTraining": 1')
    text += f', "dataset": {{"phantom_000": {entry}, "phantom_000": {entry}}}}}'
    (root / "dataset.json").write_text(text)


def _empty_image(root: Path) -> None:
    """SimpleITK cannot write a zero-size image: patch the NIfTI header's z size to 0, drop the data."""
    header = bytearray(gzip.decompress(_img(root).read_bytes())[:352])
    dims = list(struct.unpack("<8h", header[40:56]))
    dims[3] = 0
    header[40:56] = struct.pack("<8h", *dims)
    _img(root).write_bytes(gzip.compress(bytes(header)))


def _poison(value: float):
    def fn(a, g):
        a = a.astype(np.float32)
        a[tuple(s // 2 for s in a.shape)] = value
        return a, g

    return fn


# (id, corruption, file the problem line must name, words it must contain)
CORRUPTIONS = [
    ("missing_dataset_json", lambda r: (r / "dataset.json").unlink(), "dataset.json", "file not found"),
    ("malformed_json", lambda r: (r / "dataset.json").write_text("{not json"), "dataset.json", "malformed JSON"),
    ("missing_key", lambda r: _edit_json(r / "dataset.json", labels=None), "dataset.json", "labels"),
    ("numtraining_mismatch", lambda r: _edit_json(r / "dataset.json", numTraining=9), "dataset.json", "numTraining"),
    ("image_without_label", lambda r: _lab(r).unlink(), "phantom_001.nii.gz", "no label"),
    ("label_without_image", lambda r: _img(r).unlink(), "labelsTr/phantom_001.nii.gz", "label without image"),
    ("missing_channel", lambda r: (_add_channel(r), _img(r, ch=1).unlink()), "phantom_001_0001", "missing channel"),
    ("duplicate_case_id", _duplicate_key, "dataset.json", "duplicate"),
    ("duplicate_case_case_insensitive",
     lambda r: (shutil.copy(_img(r), _img(r, "PHANTOM_001")), shutil.copy(_lab(r), _lab(r, "PHANTOM_001"))),
     "imagesTr", "duplicate case id"),
    ("bad_file_ending", lambda r: shutil.copy(_img(r), r / "imagesTr" / "phantom_009_0000.nii"), "phantom_009_0000.nii",
     "bad file ending"),
    ("truncated_image", lambda r: _truncate(_img(r)), "phantom_001_0000", "unreadable"),
    ("unreadable_image", lambda r: _img(r).write_bytes(gzip.compress(b"garbage" * 10)), "phantom_001_0000", "unreadable"),
    ("channel_size", lambda r: _add_channel(r, lambda a, g: (a[:-1], g)), "phantom_001_0001", "size"),
    ("channel_spacing", lambda r: _add_channel(r, _scale_spacing), "phantom_001_0001", "spacing"),
    ("channel_origin", lambda r: _add_channel(r, _shift_origin), "phantom_001_0001", "origin"),
    ("channel_direction", lambda r: _add_channel(r, _flip_direction), "phantom_001_0001", "direction"),
    ("label_grid_shape", lambda r: _rewrite(_lab(r), lambda a, g: (a[:, :-2], g)), "labelsTr/phantom_001", "grid"),
    ("label_grid_origin", lambda r: _rewrite(_lab(r), _shift_origin), "labelsTr/phantom_001", "origin"),
    ("undeclared_label", lambda r: _rewrite(_lab(r), lambda a, g: (np.where(a == 2, 7, a).astype(np.uint8), g)),
     "labelsTr/phantom_001", "not declared"),
    ("non_integer_label", lambda r: _rewrite(_lab(r), lambda a, g: (a.astype(np.float32) * 0.5, g)),
     "labelsTr/phantom_001", "non-integer"),
    ("nan_in_image", lambda r: _rewrite(_img(r), _poison(np.nan)), "phantom_001_0000", "NaN/Inf"),
    ("inf_in_image", lambda r: _rewrite(_img(r), _poison(np.inf)), "phantom_001_0000", "NaN/Inf"),
    ("2d_in_3d_dataset", _to_2d, "phantom_001_0000", "2D image in a 3D dataset"),
    ("empty_image", _empty_image, "phantom_001_0000", "empty image"),
    ("groups_unknown_case", lambda r: (r / "groups.json").write_text(json.dumps({"nobody": "p1"})), "groups.json",
     "unknown case"),
    ("path_escapes", _escape_path, "dataset.json", "escapes the dataset folder"),
    ("ignore_not_highest", lambda r: _edit_json(r / "dataset.json", labels={"background": 0, "organ": 1, "lesion": 2,
                                                                            "ignore": 5}),
     "dataset.json", "ignore label must be the highest"),
    ("regions_without_order", lambda r: _edit_json(r / "dataset.json", labels={"background": 0, "organ": [1, 2],
                                                                               "lesion": 2}),
     "dataset.json", "regions_class_order"),
]


def test_valid_phantom_passes(phantom_copy):
    report = check_dataset(phantom_copy)
    assert report.problems == []
    assert report.summary().startswith("OK (8 cases, 1 channel (MRI), labels background=0 organ=1 lesion=2")


@pytest.mark.parametrize("corrupt,names,words", [c[1:] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS])
def test_corruption_is_reported(phantom_copy, corrupt, names, words):
    before = sorted(p.name for p in phantom_copy.rglob("*"))
    corrupt(phantom_copy)
    after_corruption = {p: p.stat().st_mtime_ns for p in phantom_copy.rglob("*") if p.is_file()}
    problems = verify_dataset(phantom_copy)
    assert problems, "corruption went unnoticed"
    hits = [p for p in problems if names in p.split(": ")[0] and words in p]
    assert hits, f"no line names {names!r} with {words!r}: {problems}"
    assert all("\n" not in p for p in problems)
    # verify never writes
    assert {p: p.stat().st_mtime_ns for p in phantom_copy.rglob("*") if p.is_file()} == after_corruption
    assert before  # the fixture was populated


def test_float_label_with_integers_is_accepted_with_note(phantom_copy):
    _rewrite(_lab(phantom_copy), lambda a, g: (a.astype(np.float32), g))
    report = check_dataset(phantom_copy)
    assert report.problems == []
    assert any("float label" in n and "phantom_001" in n for n in report.notes)


def test_macos_junk_is_ignored(phantom_copy):
    (phantom_copy / "imagesTr" / "._phantom_000_0000.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    assert verify_dataset(phantom_copy) == []


def test_cli_verify_exit_codes(phantom_copy):
    from click.testing import CliRunner

    from toolkit.cli import cli

    runner = CliRunner()
    ok = runner.invoke(cli, ["verify", str(phantom_copy)])
    assert ok.exit_code == 0 and ok.output.startswith("OK (8 cases")
    _lab(phantom_copy).unlink()
    bad = runner.invoke(cli, ["verify", str(phantom_copy)])
    assert bad.exit_code == 2
    assert "phantom_001.nii.gz: image has no label file" in bad.output


def test_real_msd_hippocampus_is_not_v2(hippocampus_msd):
    """The shared copy is in MSD layout: verify must say which v2 keys are missing, not crash."""
    problems = verify_dataset(hippocampus_msd)
    assert len(problems) == 1 and "channel_names" in problems[0] and "file_ending" in problems[0]


def test_real_hippocampus_converted_passes(hippocampus_v2):
    report = check_dataset(hippocampus_v2)
    assert report.problems == []
    assert report.n_cases == 195
