"""The acquisition axis: transpose_forward/backward as nnU-Net v2, applied from planning to export.

- planner: the transposes follow nnU-Net's rule (written out by hand here, and compared with the
  numbers nnunetv2 2.8.1 produced on the same fingerprints: tests/golden/transpose_nnunet.json from
  bench/transpose_vs_nnunet.py); plans are made in working order and stored in input order;
- toolkit/planning/axes.py: conversions round-trip;
- end to end on phantoms whose coarse axis is numpy axis 1 (sagittal) or 2: preprocessing stores the
  arrays in working order, 2d trains on slices through the coarse axis, and predictions (tiny
  trained network, and a fixed network whose output is the thresholded input, so the expected
  result is known without learning) come back with exactly the input's shape, geometry and labels.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.dataset import DatasetSpec
from toolkit.errors import SegkitError
from toolkit.io.images import Geometry, read_image, write_image
from toolkit.planning import plan_experiment
from toolkit.planning.axes import (
    array_to_input,
    array_to_working,
    entry_to_input,
    entry_to_working,
    inverse,
    nnunet_transpose,
    plans_transpose,
    to_input,
    to_working,
    working_entry,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "transpose_nnunet.json"
SPEC = DatasetSpec(Path("Dataset999_X"), {"0": "MRI"}, {"background": 0, "a": 1, "b": 2}, 10, ".nii.gz", {})
PERMS = [list(p) for p in itertools.permutations(range(3))]


def _fp(spacings, shapes):
    return {"spacings": spacings, "shapes_after_crop": shapes, "median_relative_size_after_cropping": 1.0,
            "foreground_intensity_properties_per_channel": {"0": {"mean": 100.0, "median": 100.0, "std": 20.0,
                                                                   "min": 0.0, "max": 300.0,
                                                                   "percentile_00_5": 40.0,
                                                                   "percentile_99_5": 180.0}}}


def _sagittal_fp(coarse_axis: int = 1):
    """Ten cases 4 mm along ``coarse_axis``, ~1 mm in-plane, with different in-plane extents."""
    rng = np.random.default_rng(0)
    spacings, shapes = [], []
    for _ in range(10):
        sp, sh = [round(float(rng.uniform(0.9, 1.0)), 3)] * 3, [int(rng.integers(150, 210)) for _ in range(3)]
        sp[coarse_axis], sh[coarse_axis] = 4.0, int(rng.integers(30, 40))
        spacings.append(sp)
        shapes.append(sh)
    return _fp(spacings, shapes)


# ---------------------------------------------------------------- the rule and the planner


@pytest.mark.parametrize(("spacing", "forward", "backward"), [
    ((4.0, 1.0, 1.0), [0, 1, 2], [0, 1, 2]),   # axial: identity
    ((1.0, 4.0, 1.0), [1, 0, 2], [1, 0, 2]),   # sagittal (numpy axis 1 coarse)
    ((1.0, 1.0, 4.0), [2, 0, 1], [1, 2, 0]),   # coarse on numpy axis 2
    ((1.0, 1.0, 1.0), [0, 1, 2], [0, 1, 2]),   # isotropic: argmax takes the first
    ((1.0, 2.5, 2.5), [1, 0, 2], [1, 0, 2]),   # tie between 1 and 2: the first
    ((999.0, 0.5, 0.5), [0, 1, 2], [0, 1, 2]),  # 2D images (singleton z of spacing 999)
])
def test_transpose_rule_by_hand(spacing, forward, backward):
    assert nnunet_transpose(spacing) == (forward, backward)


def _golden_cases():
    return json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("name", sorted(_golden_cases()))
def test_plans_equal_nnunetv2_up_to_the_axis_order(name):
    """Transposes exactly nnunetv2's; 2d and 3d_fullres equal in working order (batch within 1: segkit rounds
    the batch down, docs/method.md 5). The fingerprints put the coarse axis on 0, 1 and 2, with ties."""
    case = _golden_cases()[name]
    peer = case["nnunetv2"]
    plans, _ = plan_experiment(case["fingerprint"], SPEC)
    assert plans["transpose_forward"] == peer["transpose_forward"]
    assert plans["transpose_backward"] == peer["transpose_backward"]
    tf = plans["transpose_forward"]
    for cname in ("2d", "3d_fullres"):
        ours, theirs = entry_to_working(plans["configurations"][cname], tf), peer["configurations"][cname]
        np.testing.assert_allclose(ours["spacing"], theirs["spacing"], rtol=1e-6)
        assert ours["median_shape"] == theirs["median_image_size_in_voxels"]
        assert ours["patch_size"] == theirs["patch_size"], cname
        assert ours["pool_strides"] == theirs["pool_op_kernel_sizes"], cname
        assert ours["conv_kernel_sizes"] == theirs["conv_kernel_sizes"], cname
        assert abs(ours["batch_size"] - theirs["batch_size"]) <= 1, cname


@pytest.mark.parametrize("coarse", [1, 2])
def test_lists_are_stored_in_input_order(coarse):
    plans, trace = plan_experiment(_sagittal_fp(coarse), SPEC)
    fine = [a for a in range(3) if a != coarse]
    assert plans["transpose_forward"] == [coarse, *fine]
    full, two = plans["configurations"]["3d_fullres"], plans["configurations"]["2d"]
    assert full["spacing"][coarse] == 4.0 and all(full["spacing"][a] < 1.01 for a in fine)
    assert [full["spacing"][a] for a in fine] == two["spacing"]  # 2d: the in-plane axes, input order
    assert [full["median_shape"][a] for a in fine] == two["median_shape"]
    assert all(k[coarse] == 1 for k in full["conv_kernel_sizes"][:1])  # the coarse axis gets 1-kernels first
    assert not any("not axis 0" in line for line in trace)
    assert any(line.startswith("[transpose]") for line in trace)


@pytest.mark.parametrize("coarse", [1, 2])
def test_planning_works_in_the_transposed_order(coarse):
    """Plans of a sagittal fingerprint = plans of the same data stored axially, permuted: every rule
    (anisotropy, patch shrinking and its tie-breaking, topology, cascade) sees the transposed axes."""
    fp = _sagittal_fp(coarse)
    forward = [coarse] + [a for a in range(3) if a != coarse]
    axial = _fp([[s[a] for a in forward] for s in fp["spacings"]], [[s[a] for a in forward] for s in fp["shapes_after_crop"]])
    plans, _ = plan_experiment(fp, SPEC)
    ref, _ = plan_experiment(axial, SPEC)
    assert ref["transpose_forward"] == [0, 1, 2]
    assert plans["configurations"].keys() == ref["configurations"].keys()
    for cname, entry in plans["configurations"].items():
        assert entry_to_working(entry, forward) == ref["configurations"][cname], cname


def test_axial_plans_unchanged():
    """Identity transposes for axial data: lists exactly as planned (existing work directories)."""
    case = _golden_cases()["axial"]
    plans, _ = plan_experiment(case["fingerprint"], SPEC)
    assert plans["transpose_forward"] == plans["transpose_backward"] == [0, 1, 2]
    for entry in plans["configurations"].values():
        assert working_entry(plans, "2d") is plans["configurations"]["2d"]
        assert entry_to_working(entry, [0, 1, 2]) == entry


# ---------------------------------------------------------------- the conversion helper


@pytest.mark.parametrize("forward", PERMS)
def test_conversions_round_trip(forward):
    assert [forward[i] for i in inverse(forward)] == [0, 1, 2]
    assert to_input(to_working([10, 20, 30], forward), forward) == [10, 20, 30]
    assert to_working(to_input([10, 20, 30], forward), forward) == [10, 20, 30]
    assert to_working([10, 20, 30], forward) == [[10, 20, 30][a] for a in forward]
    assert to_input(to_working([7, 8], forward), forward) == [7, 8]
    entry = {"spacing": [3.0, 1.0, 2.0], "patch_size": [8, 16, 32], "conv_kernel_sizes": [[1, 3, 3], [3, 3, 3]],
             "pool_strides": [[1, 2, 2]], "num_pool_per_axis": [1, 4, 5], "median_shape": [9.0, 99.0, 88.0],
             "batch_size": 2, "features_per_stage": [32, 64]}
    assert entry_to_input(entry_to_working(entry, forward), forward) == entry
    arr = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert array_to_working(arr, forward).shape == (2, *[(3, 4, 5)[a] for a in forward])
    np.testing.assert_array_equal(array_to_input(array_to_working(arr, forward), forward), arr)
    np.testing.assert_array_equal(array_to_input(array_to_working(arr[0], forward, 0), forward, 0), arr[0])


def test_conversion_examples():
    assert to_working(["z", "y", "x"], [1, 0, 2]) == ["y", "z", "x"]
    assert to_input(["y", "z", "x"], [1, 0, 2]) == ["z", "y", "x"]
    assert to_working(["z", "y", "x"], [2, 0, 1]) == ["x", "z", "y"]
    assert to_working(["z", "x"], [1, 0, 2]) == ["z", "x"]  # nnU-Net keeps the in-plane axes in order
    assert to_working(["y", "x"], [0, 2, 1]) == ["x", "y"]  # a hand-made transpose swapping them
    assert to_input(["x", "y"], [0, 2, 1]) == ["y", "x"]
    entry = {"patch_size": [20, 160, 192], "pool_strides": [[1, 2, 2], [2, 2, 2]], "batch_size": 2}
    assert entry_to_working(entry, [1, 0, 2]) == {"patch_size": [160, 20, 192],
                                                  "pool_strides": [[2, 1, 2], [2, 2, 2]], "batch_size": 2}


def test_plans_transpose_checks():
    assert plans_transpose({}) == ([0, 1, 2], [0, 1, 2])
    assert plans_transpose({"transpose_forward": [2, 0, 1]}) == ([2, 0, 1], [1, 2, 0])
    with pytest.raises(SegkitError, match="not a permutation"):
        plans_transpose({"transpose_forward": [0, 0, 2]})
    with pytest.raises(SegkitError, match="not the inverse"):
        plans_transpose({"transpose_forward": [2, 0, 1], "transpose_backward": [2, 0, 1]})
    plans = {"transpose_forward": [1, 0, 2], "configurations": {"2d": {"patch_size": [64, 48]},
                                                                 "3d": {"patch_size": [64, 8, 48]}}}
    assert working_entry(plans, "3d")["patch_size"] == [8, 64, 48]
    assert working_entry(plans, "2d")["patch_size"] == [64, 48]
    assert plans["configurations"]["3d"]["patch_size"] == [64, 8, 48]  # the plans are not modified


def test_training_refuses_data_preprocessed_in_another_axis_order(tmp_path):
    """Re-planning can change transpose_forward; arrays stored in the old order must not be trained on."""
    from training_helpers import make_work

    from toolkit.training.setup import resolve_training

    root, work = make_work(tmp_path, n_cases=4)
    assert resolve_training(root, work, "3d_fullres", 0).plan["patch_size"] == [16, 16, 16]  # no key: identity
    plans_path = work / root.name / "plans.json"
    plans = json.loads(plans_path.read_text(encoding="utf-8"))
    plans.update(transpose_forward=[1, 0, 2], transpose_backward=[1, 0, 2])
    plans_path.write_text(json.dumps(plans), encoding="utf-8")
    with pytest.raises(SegkitError, match=r"preprocessed with transpose_forward \[0, 1, 2\] but the plans say"):
        resolve_training(root, work, "3d_fullres", 0)


# ---------------------------------------------------------------- end to end

SAGITTAL_DIRECTION = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # a proper rotation (det +1)
FINE, COARSE = 1.0, 4.0
WORKING_SHAPE = (10, 44, 38)  # coarse slices, then the two fine axes


def _case(rng: np.random.Generator, coarse: int) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """A body (10) with an off-centre ellipsoid plus a bar (200, label 1) on a zero border, built in working
    order and moved so the coarse axis is numpy axis ``coarse``. Every case has the same spacing (no
    resampling, so preprocessing + export of a perfect prediction must give the label back exactly)."""
    n, h, w = WORKING_SHAPE
    label = np.zeros(WORKING_SHAPE, np.uint8)
    zz, yy, xx = np.ogrid[:n, :h, :w]
    cz, cy, cx = rng.uniform(3, 6), rng.uniform(12, 20), rng.uniform(10, 16)
    label[((zz - cz) * COARSE / 10) ** 2 + ((yy - cy) / 7) ** 2 + ((xx - cx) / 5) ** 2 <= 1] = 1
    label[2:5, 30:34, 6:30] = 1  # a bar: the structure has no symmetry an axis swap could hide
    image = np.zeros(WORKING_SHAPE, np.float32)
    image[1:-1, 2:-3, 1:-2] = 10.0
    image[label == 1] = 200.0
    label[image == 0] = 0
    fine = [a for a in range(3) if a != coarse]
    order = [0] * 3  # input axis a holds working axis order[a]
    for working_axis, input_axis in enumerate([coarse, *fine]):
        order[input_axis] = working_axis
    spacing_zyx = [COARSE if a == coarse else FINE for a in range(3)]
    geometry = Geometry(tuple(reversed(spacing_zyx)), tuple(float(v) for v in rng.uniform(-80, 80, 3)),
                        SAGITTAL_DIRECTION)
    return image.transpose(order).copy(), label.transpose(order).copy(), geometry


def _dataset(root: Path, coarse: int) -> Path:
    ds = root / f"Dataset95{coarse}_Coarse{coarse}"
    rng = np.random.default_rng(coarse)
    ids = [f"c_{i:03d}" for i in range(5)]
    for i, case in enumerate(ids):
        split = "Tr" if i < 4 else "Ts"
        image, label, geometry = _case(rng, coarse)
        write_image(image, geometry, ds / f"images{split}" / f"{case}_0000.nii.gz")
        write_image(label, geometry, ds / f"labels{split}" / f"{case}.nii.gz")
    (ds / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": {"background": 0, "structure": 1}, "numTraining": 4,
        "file_ending": ".nii.gz"}), encoding="utf-8")
    (ds / "splits_final.json").write_text(json.dumps([
        {"train": ids[:2], "val": ids[2:4]}, {"train": ids[2:4], "val": ids[:2]}]), encoding="utf-8")
    return ds


class ThresholdNet(torch.nn.Module):
    """Class 1 where the (z-scored) input is positive: the structure (200) vs the body (10). Records its
    input shapes, i.e. the 2d windows the sliding window cuts."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return torch.cat([-x[:, :1], x[:, :1]], dim=1) * 10


def _same_geometry(a: Geometry, b: Geometry) -> None:
    assert a.spacing_xyz == b.spacing_xyz and a.origin_xyz == b.origin_xyz and a.direction == b.direction


TINY = ["--epochs", "1", "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0", "--device", "cpu"]


@pytest.mark.slow
@pytest.mark.parametrize("coarse", [1, 2])
def test_end_to_end_coarse_axis(tmp_path, coarse):
    from toolkit.inference.model_folder import load_model_folder
    from toolkit.inference.predictor import Predictor
    from toolkit.preprocessing.storage import load_case

    ds, work = _dataset(tmp_path / "raw", coarse), tmp_path / "work"
    runner = CliRunner()
    for args in (["plan"], ["preprocess", "-c", "2d", "-j", "1"], ["train", "-c", "2d", "-f", "0", *TINY]):
        result = runner.invoke(cli, [args[0], str(ds), "--work", str(work), *args[1:]])
        assert result.exit_code == 0, result.output
    wd = work / ds.name
    plans = json.loads((wd / "plans.json").read_text(encoding="utf-8"))
    forward = [coarse] + [a for a in range(3) if a != coarse]
    assert plans["transpose_forward"] == forward and plans["transpose_backward"] == inverse(forward)
    assert plans["configurations"]["2d"]["spacing"] == [FINE, FINE]
    assert plans["configurations"]["3d_fullres"]["spacing"][coarse] == COARSE

    # stored arrays: working order, i.e. the raw arrays transposed, slices along the coarse axis first
    raw_label, _ = read_image(ds / "labelsTr" / "c_000.nii.gz")
    data, seg, props = load_case(wd / "preprocessed" / "2d", "c_000")
    assert props["transpose_forward"] == forward
    assert props["shape_before_crop"] == list(WORKING_SHAPE) == [raw_label.shape[a] for a in forward]
    box = tuple(slice(a, b) for a, b in props["bbox"])
    np.testing.assert_array_equal(seg[0], raw_label.transpose(forward)[box])

    # the 2d network and its windows work on the two fine axes
    model = load_model_folder(wd / "models" / "2d", [0])
    patch = model.plan["patch_size"]
    assert len(patch) == 2 and patch == to_working(plans["configurations"]["2d"]["patch_size"], forward)
    net = ThresholdNet()
    predictor = Predictor(model, [net], "cpu", num_classes=2)
    out = tmp_path / "fixed"
    for img in sorted((ds / "imagesTr").glob("*_0000.nii.gz")) + sorted((ds / "imagesTs").glob("*_0000.nii.gz")):
        case = img.name[: -len("_0000.nii.gz")]
        pre = predictor.preprocess(case, [img])
        predictor.export(predictor.predict(pre), pre, out / f"{case}.nii.gz")
        pred, geo = read_image(out / f"{case}.nii.gz")
        ref_dir = "labelsTr" if (ds / "labelsTr" / f"{case}.nii.gz").is_file() else "labelsTs"
        ref, ref_geo = read_image(ds / ref_dir / f"{case}.nii.gz")
        np.testing.assert_array_equal(pred, ref)  # exact overlay, in the input's axis order
        _same_geometry(geo, ref_geo)
    assert net.shapes and all(s[2:] == tuple(patch) for s in net.shapes)

    # the trained network through the CLI, and the fold's validation predictions: input shape and geometry
    pred_dir = tmp_path / "pred"
    result = runner.invoke(cli, ["predict", "-m", str(wd / "models" / "2d"), "-i", str(ds / "imagesTs"), "-o",
                                 str(pred_dir), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for pred_file, ref_file in [(pred_dir / "c_004.nii.gz", ds / "labelsTs" / "c_004.nii.gz")] + [
            (wd / "models" / "2d" / "fold_0" / "validation" / f"{c}.nii.gz", ds / "labelsTr" / f"{c}.nii.gz")
            for c in ("c_002", "c_003")]:
        pred, geo = read_image(pred_file)
        ref, ref_geo = read_image(ref_file)
        assert pred.shape == ref.shape
        _same_geometry(geo, ref_geo)


class EchoPrevious(torch.nn.Module):
    """Cascade full-res stand-in: logits = 20 x the previous stage's one-hot channels."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 3  # image + 2 one-hot channels
        return 20 * x[:, 1:]


def test_cascade_hand_over_in_working_order(tmp_path):
    """3d_lowres -> 3d_cascade_fullres on sagittal data: the low-res result reaches the full-res stage on its
    (transposed) grid and the export overlays the input (fixed networks, no training)."""
    from toolkit.inference.model_folder import ModelFolder
    from toolkit.inference.predictor import Predictor

    ds = _dataset(tmp_path / "raw", 1)
    arch = {"conv_kernel_sizes": [[1, 3, 3], [3, 3, 3]], "pool_strides": [[1, 2, 2]], "features_per_stage": [4, 8],
            "normalization": ["zscore"], "use_mask_for_norm": [False]}
    # input order (z, y, x); numpy axis 1 is the coarse one, so working order is (y, z, x)
    low = {**arch, "spacing": [1.5, COARSE, 1.5], "patch_size": [32, 8, 32], "data_identifier": "3d_lowres",
           "next_stage": "3d_cascade_fullres"}
    full = {**arch, "spacing": [FINE, COARSE, FINE], "patch_size": [48, 8, 40], "data_identifier": "3d_fullres",
            "previous_stage": "3d_lowres"}
    plans = {"dataset_name": ds.name, "transpose_forward": [1, 0, 2], "transpose_backward": [1, 0, 2],
             "labels": {"background": 0, "structure": 1},
             "configurations": {"3d_lowres": low, "3d_cascade_fullres": full}}
    ds_json = json.loads((ds / "dataset.json").read_text(encoding="utf-8"))
    previous = Predictor(ModelFolder(tmp_path / "3d_lowres", "3d_lowres", plans, ds_json, (0,)), [ThresholdNet()],
                         "cpu", num_classes=2)
    cascade = Predictor(ModelFolder(tmp_path / "3d_cascade_fullres", "3d_cascade_fullres", plans, ds_json, (0,)),
                        [EchoPrevious()], "cpu", num_classes=2, previous=previous)
    assert cascade.patch_size == (8, 48, 40)
    image, ref_label = ds / "imagesTs" / "c_004_0000.nii.gz", ds / "labelsTs" / "c_004.nii.gz"
    case = cascade.preprocess("c_004", [image])
    assert case.data.shape[1] == WORKING_SHAPE[0] - 2 and case.previous.data.shape[1] == WORKING_SHAPE[0] - 2
    assert case.previous.data.shape[2] < case.data.shape[2]
    from toolkit.inference.cascade import previous_stage_onehot

    probs = cascade.predict(case)
    expected = previous_stage_onehot(previous.predict(case.previous), case.data.shape[1:]).argmax(0)
    assert torch.equal(probs.argmax(0), expected)  # the full-res stage saw the low-res result, same axes
    cascade.export(probs, case, tmp_path / "out" / "c_004.nii.gz")
    pred, geo = read_image(tmp_path / "out" / "c_004.nii.gz")
    ref, ref_geo = read_image(ref_label)
    assert pred.shape == ref.shape
    _same_geometry(geo, ref_geo)
    dice = 2 * np.sum((pred == 1) & (ref == 1)) / (np.sum(pred == 1) + np.sum(ref == 1))
    assert dice > 0.8, dice  # the low-res threshold, resampled twice: close to, not exactly, the label
