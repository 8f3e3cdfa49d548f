"""Shared fixtures: the phantom challenge, the expensive phantom runs several test files use (one short
`segkit demo` run, one tiny untrained export bundle), and the real data in ../shared/data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from toolkit.io.images import read_image, write_image
from toolkit.phantom import make_phantom_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def phantom_dataset(tmp_path_factory) -> Path:
    """The built-in phantom challenge (8 training cases in 4 patients, 2 test cases). Read-only use."""
    return make_phantom_dataset(tmp_path_factory.mktemp("phantom"), n_train=8, n_test=2, seed=0)


@pytest.fixture
def phantom_copy(phantom_dataset, tmp_path) -> Path:
    """A private, writable copy of the phantom dataset for tests that corrupt or modify it."""
    dst = tmp_path / phantom_dataset.name
    shutil.copytree(phantom_dataset, dst)
    return dst


@pytest.fixture(scope="session")
def short_demo(tmp_path_factory) -> dict:
    """One trained phantom run, shared by tests/test_demo.py (the demo command) and tests/test_pipeline.py
    (run, selection, export, bundle, report on its work dir). Tests may add files beside it but must not
    change what it wrote. Keys: work, dataset (the phantom challenge), output (the demo's stdout)."""
    from click.testing import CliRunner
    from phantom_helpers import SHORT_DEMO

    from toolkit.cli import cli

    work = tmp_path_factory.mktemp("short_demo") / "work"
    result = CliRunner().invoke(cli, ["demo", "--work", str(work), *SHORT_DEMO])
    assert result.exit_code == 0, result.output
    return {"work": work, "dataset": work / "raw" / "Dataset900_Phantom", "output": result.output}


@pytest.fixture(scope="session")
def tiny_phantom_bundle(phantom_dataset, tmp_path_factory) -> Path:
    """A tiny untrained export bundle of the phantom (tests/bundle_helpers.py), shared by the packaging
    tests with and without an engine. Read-only use."""
    from bundle_helpers import make_tiny_bundle

    return make_tiny_bundle(phantom_dataset, tmp_path_factory.mktemp("tiny_bundle"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent")
    return SHARED_DATA


def msd_to_v2(msd_root: Path, out_root: Path, max_cases: int | None = None) -> Path:
    """Minimal on-the-fly MSD -> nnU-Net v2 conversion for single-channel MSD tasks (tests only;
    the real converter is the ``decathlon`` challenge adapter)."""
    meta = json.loads((msd_root / "dataset.json").read_text())
    (out_root / "imagesTr").mkdir(parents=True)
    (out_root / "labelsTr").mkdir()
    entries = sorted(meta["training"], key=lambda e: e["image"])[:max_cases]
    for e in entries:
        case = Path(e["image"]).name[: -len(".nii.gz")]
        shutil.copy(msd_root / e["image"], out_root / "imagesTr" / f"{case}_0000.nii.gz")
        shutil.copy(msd_root / e["label"], out_root / "labelsTr" / f"{case}.nii.gz")
    v2 = {
        "channel_names": {k: v for k, v in meta["modality"].items()},
        "labels": {("background" if int(k) == 0 else v): int(k) for k, v in meta["labels"].items()},
        "numTraining": len(entries),
        "file_ending": ".nii.gz",
        "name": meta.get("name", msd_root.name),
    }
    (out_root / "dataset.json").write_text(json.dumps(v2, indent=2))
    return out_root


def brats_to_canonical(src: Path, out: Path) -> Path:
    """The four developer cases in the canonical layout: FLAIR and T1c as channels, the BRATS 2015
    labels 0-4 kept, declared as the BraTS regions (docs/interfaces.md "Region labels and the ignore label");
    one split, 3 training cases and 1 validation case (tests/test_learning_regions.py, bench/regions_vs_nnunet.py)."""
    root = out / "Dataset015_BraTS2015"
    cases = sorted(p for split in ("train", "validation") for p in (src / split).iterdir() if p.is_dir())
    for case in cases:
        for channel, name in enumerate(("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd")):
            (root / "imagesTr").mkdir(parents=True, exist_ok=True)
            shutil.copy(case / f"{name}.nii.gz", root / "imagesTr" / f"{case.name}_{channel:04d}.nii.gz")
        label, geometry = read_image(case / "OTMultiClass.nii.gz")
        write_image(np.rint(label).astype(np.uint8), geometry, root / "labelsTr" / f"{case.name}.nii.gz")
    dataset = {"channel_names": {"0": "FLAIR", "1": "T1c"}, "numTraining": len(cases), "file_ending": ".nii.gz",
               "labels": {"background": 0, "whole tumour": [1, 2, 3, 4], "tumour core": [1, 3, 4],
                          "enhancing tumour": 4},
               "regions_class_order": [2, 1, 4]}
    (root / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")
    ids = [c.name for c in cases]
    (root / "splits_final.json").write_text(json.dumps([{"train": ids[:3], "val": ids[3:]}]), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def hippocampus_msd(shared_data) -> Path:
    """The real MSD Task04_Hippocampus folder (MSD layout, read-only)."""
    root = shared_data / "Task04_Hippocampus"
    if not (root / "dataset.json").is_file():
        pytest.skip(f"real data not available: {root} is absent")
    return root


@pytest.fixture(scope="session")
def hippocampus_v2(hippocampus_msd, tmp_path_factory) -> Path:
    """Task04_Hippocampus converted to the nnU-Net v2 layout (its 195 training cases)."""
    return msd_to_v2(hippocampus_msd, tmp_path_factory.mktemp("hippo") / "Dataset004_Hippocampus")
