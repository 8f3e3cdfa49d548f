"""Predictor, validation predictions, the predict pipeline and `segkit predict`, on the phantom dataset
with a tiny U-Net trained here for a few iterations (the real trainer is not needed for these tests)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from phantom_helpers import dice_on_test_set

from toolkit.cli import cli
from toolkit.dataset.splits import make_splits
from toolkit.errors import SegkitError
from toolkit.evaluation.evaluate import evaluate_folder
from toolkit.inference.model_folder import load_model_folder
from toolkit.inference.pipeline import predict_folder
from toolkit.inference.predictor import Predictor
from toolkit.inference.validation import predict_validation
from toolkit.io.images import read_image
from toolkit.network.architecture import UNetSpec
from toolkit.network.unet import build_network
from toolkit.preprocessing.storage import load_case

CONFIG = "3d_fullres"
PATCH = [16, 32, 32]


def _tiny_plan(entry: dict) -> dict:
    entry = copy.deepcopy(entry)
    entry.update(patch_size=PATCH, conv_kernel_sizes=[[3, 3, 3]] * 3, pool_strides=[[2, 2, 2]] * 2,
                 features_per_stage=[4, 8, 16])
    return entry


def _spec(in_channels: int, num_classes: int = 3) -> UNetSpec:
    return UNetSpec.from_plan(_tiny_plan({}), in_channels, num_classes)


def _random_patch(data: np.ndarray, seg: np.ndarray, rng: np.random.Generator):
    starts = [int(rng.integers(0, max(1, s - p + 1))) for s, p in zip(data.shape[1:], PATCH, strict=True)]
    sl = (slice(None), *[slice(a, a + p) for a, p in zip(starts, PATCH, strict=True)])
    return data[sl], seg[sl]


def _train_tiny(pre_dir: Path, cases: list[str], iters: int = 60) -> torch.nn.Module:
    """A few iterations of cross-entropy on random patches: enough for a non-trivial segmentation."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = build_network(_spec(1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loaded = [load_case(pre_dir, c, mmap=False)[:2] for c in cases]
    for _ in range(iters):
        pairs = [_random_patch(*loaded[int(rng.integers(len(loaded)))], rng) for _ in range(2)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))
        # outside the non-zero mask the preprocessed seg holds -1 (docs/interfaces.md "Preprocessed cases")
        y = torch.from_numpy(np.maximum(np.stack([p[1][0] for p in pairs]), 0).astype(np.int64))
        loss = torch.nn.functional.cross_entropy(net(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def _save_checkpoint(net: torch.nn.Module, spec: UNetSpec, path: Path, config: str = CONFIG) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"in_channels": spec.in_channels, "num_classes": spec.num_classes, "features": list(spec.features),
              "kernel_sizes": [list(k) for k in spec.kernel_sizes], "strides": [list(s) for s in spec.strides],
              "deep_supervision": spec.deep_supervision}
    torch.save({"network_weights": net.state_dict(), "optimizer_state": {}, "grad_scaler_state": None,
                "epoch": 1, "logs": {}, "rng_state": {}, "config": config, "spec": fields,
                "options": {"epochs": 1}}, path)


def _run_cli(args: list[str]) -> None:
    cli.main(args=args, prog_name="segkit", standalone_mode=False)


@pytest.fixture(scope="module")
def tiny_model(phantom_dataset, tmp_path_factory):
    """Work dir with plans, preprocessed 3d_fullres data, 2-fold splits and a trained fold-0 model folder."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine is shared: more threads than free cores only thrash
    work = tmp_path_factory.mktemp("work")
    for cmd in (["fingerprint", "-j", "1"], ["plan"], ["preprocess", "-c", CONFIG, "-j", "1"]):
        _run_cli([cmd[0], str(phantom_dataset), "--work", str(work), *cmd[1:]])
    root = work / phantom_dataset.name
    plans = json.loads((root / "plans.json").read_text())
    plans["configurations"][CONFIG] = _tiny_plan(plans["configurations"][CONFIG])
    cases = sorted(p.name[: -len(".json")] for p in (root / "preprocessed").rglob("*.json"))
    splits = make_splits(cases, None, folds=2, seed=12345)
    (root / "splits_final.json").write_text(json.dumps(splits))
    model = root / "models" / CONFIG
    model.mkdir(parents=True)
    (model / "plans.json").write_text(json.dumps(plans))
    shutil.copy(phantom_dataset / "dataset.json", model / "dataset.json")
    pre_dir = root / "preprocessed" / plans["configurations"][CONFIG].get("data_identifier", CONFIG)
    net = _train_tiny(pre_dir, splits[0]["train"])
    _save_checkpoint(net, _spec(1), model / "fold_0" / "checkpoint_final.pt")
    yield {"dataset": phantom_dataset, "root": root, "model": model, "splits": splits, "plans": plans}
    torch.set_num_threads(threads)


def test_validation_summary_and_outputs(tiny_model):
    fold_dir = tiny_model["model"] / "fold_0"
    summary = predict_validation(fold_dir, dataset_root=tiny_model["dataset"])
    val = tiny_model["splits"][0]["val"]
    assert [c["case"] for c in summary["per_case"]] == sorted(val)
    assert json.loads((fold_dir / "validation" / "summary.json").read_text())["foreground_mean"] == \
        summary["foreground_mean"]
    assert summary["foreground_mean"]["Dice"] > 0.3  # a few iterations already find the organ
    for case in val:
        seg, geo = read_image(fold_dir / "validation" / f"{case}.nii.gz")
        ref, ref_geo = read_image(tiny_model["dataset"] / "labelsTr" / f"{case}.nii.gz")
        assert seg.shape == ref.shape and geo == ref_geo
        with np.load(fold_dir / "validation" / f"{case}.npz") as z:
            assert z["probabilities"].shape == (3, *ref.shape)


def test_predict_reproduces_validation_dice(tiny_model, tmp_path):
    """Raw images -> `segkit predict` -> evaluation gives the Dice that validation reported."""
    ds, fold_dir = tiny_model["dataset"], tiny_model["model"] / "fold_0"
    summary = predict_validation(fold_dir, dataset_root=ds)
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    for case in tiny_model["splits"][0]["val"]:
        shutil.copy(ds / "imagesTr" / f"{case}_0000.nii.gz", in_dir)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        from toolkit.cli import main
        main(["predict", "-m", str(tiny_model["model"]), "-i", str(in_dir), "-o", str(out), "--folds", "0",
              "--device", "cpu"])
    assert exc.value.code == 0
    ours = evaluate_folder(out, ds / "labelsTr", ds / "dataset.json", surface_metrics=False)
    for mine, theirs in zip(ours["per_case"], summary["per_case"], strict=True):
        assert mine["case"] == theirs["case"]
        for label in ("1", "2"):
            assert mine["metrics"][label]["Dice"] == pytest.approx(theirs["metrics"][label]["Dice"], abs=1e-9)


def test_predict_mixed_precision_on_cpu(tiny_model, tmp_path):
    """`segkit predict --precision mixed` runs the networks in bf16 on CPU; labels stay (almost) the fp32 ones."""
    import toolkit.inference.sliding_window as sw
    from toolkit.cli import main

    ds = tiny_model["dataset"]
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    case = tiny_model["splits"][0]["val"][0]
    shutil.copy(ds / "imagesTr" / f"{case}_0000.nii.gz", in_dir)
    seen = []
    real = sw._predict_tta

    def spy(network, x, variants, device, policy="fp32"):
        hook = network.register_forward_hook(
            lambda _m, _i, out: seen.append((policy, (out[0] if isinstance(out, list | tuple) else out).dtype)))
        try:
            return real(network, x, variants, device, policy)
        finally:
            hook.remove()

    outs = {}
    for precision in ("fp32", "mixed"):
        outs[precision] = tmp_path / precision
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sw, "_predict_tta", spy)
            with pytest.raises(SystemExit) as exc:
                main(["predict", "-m", str(tiny_model["model"]), "-i", str(in_dir), "-o", str(outs[precision]),
                      "--folds", "0", "--device", "cpu", "--precision", precision])
        assert exc.value.code == 0
    assert set(seen) == {("fp32", torch.float32), ("bf16", torch.bfloat16)}  # what really ran
    a, geo_a = read_image(outs["fp32"] / f"{case}.nii.gz")
    b, geo_b = read_image(outs["mixed"] / f"{case}.nii.gz")
    assert geo_a == geo_b and np.mean(a == b) > 0.99


def test_predict_folder_geometry_resume_and_failures(tiny_model, tmp_path, capsys):
    ds = tiny_model["dataset"]
    in_dir = tmp_path / "in"
    shutil.copytree(ds / "imagesTs", in_dir)
    test_cases = sorted(p.name[: -len("_0000.nii.gz")] for p in in_dir.iterdir())
    shutil.copy(in_dir / f"{test_cases[0]}_0000.nii.gz", in_dir / "broken_0001.nii.gz")  # no channel 0
    predictor = Predictor.from_model_folder(tiny_model["model"], [0], "cpu", tta=False)

    class Interrupted(Exception):
        pass

    original_export, calls = predictor.export, []

    def export_then_crash(probs, case, out, save):
        calls.append(case.case_id)
        if len(calls) == 2:
            raise Interrupted("power cut")
        original_export(probs, case, out, save)

    predictor.export = export_then_crash
    out = tmp_path / "out"
    report = predict_folder(predictor, in_dir, out, 1, save_probabilities=True, progress=False)
    assert report.predicted == [test_cases[0]]
    assert "broken" in report.failed and "missing channel" in report.failed["broken"]
    assert test_cases[1] in report.failed and report.internal_errors == 1
    err = capsys.readouterr().err
    assert "segkit: error: " in err and "broken" in err
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no half-written file left

    predictor.export = original_export
    report = predict_folder(predictor, in_dir, out, 1, save_probabilities=True, progress=False)
    assert report.skipped == [test_cases[0]] and report.predicted == [test_cases[1]]
    for case in test_cases:
        seg, geo = read_image(out / f"{case}.nii.gz")
        img, img_geo = read_image(in_dir / f"{case}_0000.nii.gz")
        assert seg.shape == img.shape and geo == img_geo
        assert (out / f"{case}.npz").is_file()
    # what was written is a segmentation, not just labels in range: the 60-iteration model finds the organ
    # (measured: Dice 0.91 on both test cases; the small lesion is not learnt yet)
    scores = dice_on_test_set(out, ds)
    assert sorted(scores) == test_cases and all(s[1] >= 0.8 for s in scores.values()), scores


def test_cli_reports_failed_case_with_exit_2(tiny_model, tmp_path, capsys):
    ds = tiny_model["dataset"]
    in_dir = tmp_path / "in"
    shutil.copytree(ds / "imagesTs", in_dir)
    good = sorted(in_dir.iterdir())[0].name[: -len("_0000.nii.gz")]
    shutil.copy(sorted(in_dir.iterdir())[0], in_dir / "extra_0001.nii.gz")
    from toolkit.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["predict", "-m", str(tiny_model["model"]), "-i", str(in_dir), "-o", str(tmp_path / "o"),
              "--no-tta", "--device", "cpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "case extra" in err and err.strip().splitlines()[-1].startswith("segkit: error: ")
    assert (tmp_path / "o" / f"{good}.nii.gz").is_file()


def test_fold_ensemble_averages_logits(tiny_model, tmp_path):
    """The folds' logits are averaged, then the softmax (nnU-Net v2): log-probabilities differ from the
    logits by a per-voxel constant, which the softmax ignores."""
    model = tmp_path / "models" / CONFIG
    shutil.copytree(tiny_model["model"], model)
    torch.manual_seed(5)
    _save_checkpoint(build_network(_spec(1)), _spec(1), model / "fold_1" / "checkpoint_final.pt")
    data = np.random.default_rng(0).standard_normal((1, 20, 40, 36)).astype(np.float32)
    both = Predictor.from_model_folder(model, None, "cpu", tta=False)
    assert both.model.folds == (0, 1)
    singles = [Predictor.from_model_folder(model, [k], "cpu", tta=False).predict_data(data) for k in (0, 1)]
    expected = torch.softmax((singles[0].log() + singles[1].log()) / 2, 0)
    assert torch.allclose(both.predict_data(data), expected, atol=1e-5)
    assert not torch.allclose(both.predict_data(data), (singles[0] + singles[1]) / 2, atol=1e-6)


def test_model_folder_errors(tiny_model, tmp_path):
    with pytest.raises(SegkitError, match="model folder not found"):
        load_model_folder(tmp_path / "nope")
    with pytest.raises(SegkitError, match="final checkpoint not found"):
        load_model_folder(tiny_model["model"], [3])
    with pytest.raises(SegkitError, match="step"):
        Predictor.from_model_folder(tiny_model["model"], [0], "cpu", step=0.0)


def test_region_model_predicts_sigmoids_painted_in_regions_class_order(tiny_model, tmp_path):
    """A region model (one sigmoid per region): saved probabilities are sigmoids, and the label map is
    their 0.5-thresholds painted in regions_class_order, never the ignore value."""
    model = tmp_path / "models" / CONFIG
    shutil.copytree(tiny_model["model"], model)
    ds = json.loads((model / "dataset.json").read_text())
    ds["labels"] = {"background": 0, "tumour": [1, 2], "lesion": 2, "ignore": 3}
    ds["regions_class_order"] = [1, 2]
    (model / "dataset.json").write_text(json.dumps(ds))
    with pytest.raises(SegkitError, match="network has 3 outputs but dataset.json declares 2 regions"):
        Predictor.from_model_folder(model, [0], "cpu")
    torch.manual_seed(3)
    _save_checkpoint(build_network(_spec(1, 2)), _spec(1, 2), model / "fold_0" / "checkpoint_final.pt")
    predictor = Predictor.from_model_folder(model, [0], "cpu", tta=False)
    images = sorted((tiny_model["dataset"] / "imagesTs").glob("*_0000.nii.gz"))[:1]
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(images[0], inputs / images[0].name)
    probs, _ = predictor.predict_case([images[0]])
    assert probs.shape[0] == 2 and probs.min() >= 0 and probs.max() <= 1
    assert not np.allclose(probs.sum(0), 1, atol=1e-3)  # sigmoids, not a softmax
    report = predict_folder(predictor, inputs, tmp_path / "out", 1, save_probabilities=True, progress=False)
    assert not report.failed
    case = images[0].name[: -len("_0000.nii.gz")]
    seg, _ = read_image(tmp_path / "out" / f"{case}.nii.gz")
    stored = np.load(tmp_path / "out" / f"{case}.npz")["probabilities"]
    expected = np.zeros(seg.shape, np.uint8)
    expected[stored[0] > 0.5] = 1
    expected[stored[1] > 0.5] = 2
    assert np.array_equal(seg, expected)
    assert set(np.unique(seg)) == {0, 1, 2}  # a non-trivial map: every painted value occurs
