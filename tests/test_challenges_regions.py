"""Region labels at conversion: the YAML ``regions:`` key of any adapter and decathlon's ``-O regions=brats``
on a miniature MSD Task01_BrainTumour built here (4D images, MSD labels 1 edema, 2 non-enhancing, 3 enhancing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from challenge_helpers import convert_checked

from challenges.convert import convert
from challenges.registry import get_adapter
from toolkit.dataset.labels import dataset_label_spec
from toolkit.errors import SegkitError
from toolkit.io.images import read_image

MSD_LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}


def _mini_task01(root: Path) -> dict[str, np.ndarray]:
    """Two training cases and one test case, 4 modalities stacked as the 4th dimension (as MSD)."""
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    meta = {"name": "BRATS", "description": "mini", "reference": "test", "licence": "CC-BY-SA 4.0",
            "release": "test", "tensorImageSize": "4D", "labels": MSD_LABELS,
            "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}, "training": [], "test": []}
    truth = {}
    for i in range(1, 4):
        name = f"BRATS_{i:03d}"
        image = sitk.GetImageFromArray(rng.normal(size=(4, 5, 6, 7)).astype(np.float32), isVector=False)
        split = "imagesTr" if i < 3 else "imagesTs"
        sitk.WriteImage(image, str(root / split / f"{name}.nii.gz"))
        if i == 3:
            meta["test"].append(f"./imagesTs/{name}.nii.gz")
            continue
        seg = np.zeros((5, 6, 7), np.uint8)
        seg[1:4, 1:5, 1:6] = 1
        seg[2:4, 2:4, 2:5] = 2
        seg[2, 2:4, 3:4 + i] = 3
        label = sitk.GetImageFromArray(seg)
        sitk.WriteImage(label, str(root / "labelsTr" / f"{name}.nii.gz"))
        meta["training"].append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
        truth[name] = seg
    (root / "dataset.json").write_text(json.dumps(meta))
    return truth


@pytest.fixture
def task01(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "Task01_BrainTumour"
    return root, _mini_task01(root)


def test_decathlon_brats_regions_as_nnunet(task01, tmp_path):
    raw, truth = task01
    ds = convert_checked("decathlon", raw, tmp_path / "Dataset001_BrainTumour", regions="brats")
    # nnunetv2/dataset_conversion/Dataset137_BraTS21.py: the same regions and order on the same label values
    assert ds["labels"] == {"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3],
                            "enhancing tumour": [3]}
    assert ds["regions_class_order"] == [1, 2, 3]
    spec = dataset_label_spec(ds)
    assert spec.has_regions and spec.num_outputs == 3 and spec.regions == ((1, 2, 3), (2, 3), (3,))
    label, _ = read_image(tmp_path / "Dataset001_BrainTumour" / "labelsTr" / "BRATS_002.nii.gz")
    assert np.array_equal(label, truth["BRATS_002"])  # the label files keep their values


def test_without_regions_the_msd_classes_stay(task01, tmp_path):
    raw, _ = task01
    ds = convert_checked("decathlon", raw, tmp_path / "plain")
    assert ds["labels"] == {"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumour": 3}
    assert "regions_class_order" not in ds


def test_yaml_regions_mapping_from_any_adapter(task01, tmp_path):
    raw, _ = task01
    regions = {"labels": {"tumour": [1, 2, 3], "core": [2, 3]}, "regions_class_order": [1, 2]}
    ds = convert_checked("decathlon", raw, tmp_path / "custom", regions=regions)
    assert ds["labels"] == {"background": 0, "tumour": [1, 2, 3], "core": [2, 3]}
    assert ds["regions_class_order"] == [1, 2]


@pytest.mark.parametrize("regions,words", [
    ("kits", "unknown regions preset 'kits' (this challenge has: brats)"),
    ({"labels": {"tumour": [1, 2, 9]}, "regions_class_order": [1]}, "label value(s) [9]"),
    ({"labels": {"tumour": [1, 2], "core": [2]}, "regions_class_order": [1]}, "regions_class_order has 1"),
    ([1, 2], "regions must be a preset name"),
])
def test_bad_regions_are_one_line_errors(task01, tmp_path, regions, words):
    raw, _ = task01
    with pytest.raises(SegkitError, match=None) as info:
        convert(get_adapter("decathlon", {"regions": regions}), raw, tmp_path / "out")
    assert words in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
