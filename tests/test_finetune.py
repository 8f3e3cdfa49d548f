"""Fine-tuning: `segkit plan --like` and `segkit train --pretrained-weights` (pretrained.py, transfer.py).

End to end (slow, one shared pretraining): pretrain 2d on one phantom (one epoch of PRETRAIN_ITERS
iterations), move its plans to a second phantom whose labels differ (organ and lesion merged: 2
classes instead of 3, same image content) and train the target once fine-tuned and once from scratch
with the same seed (hence the same batches and the same fresh heads).

What "the loss starts lower" is measured as: the mean training loss (CE + soft Dice, deep-supervision
weighted; ``logs["train_loss"][0]``) of a first epoch of FIRST_EPOCH_ITERS = 25 iterations. Not the
loss of the first few iterations: the heads are re-initialised (the label set differs), as in nnU-Net
with a fresh He initialisation, and a random projection of the pretrained, informative features is
confidently right or wrong depending on the draw. Measured on a fixed batch set before any update
(six head seeds): from scratch 0.53-0.82, fine-tuned 0.09-1.16, while the source network's own heads
(organ and lesion merged) score -0.92 on the target, so the features transfer; the head aligns within
~10 iterations. First-epoch means with 5/10 iterations favoured scratch for some seeds (e.g. seed 7:
fine-tuned higher, as an earlier version of this test found with 3-5 iterations); with 25 iterations
fine-tuning was lower for every seed (this setup, fp32, through the CLI: scratch - fine-tuned =
0.134, 0.208, 0.232, 0.170, 0.093, 0.213, 0.076 for seeds 1-7), hence MARGIN = 0.05 at SEED = 1.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.errors import SegkitError
from toolkit.io.images import read_image, write_image
from toolkit.network.architecture import UNetSpec
from toolkit.network.unet import build_network
from toolkit.phantom import make_phantom_dataset
from toolkit.training.pretrained import load_pretrained

CPU = ["--num-workers", "0", "--device", "cpu", "--precision", "fp32"]
PRETRAIN_ITERS = 100  # 2d pretraining on the source phantom (one epoch)
FIRST_EPOCH_ITERS = 25  # the first epoch on the target whose mean loss is compared
SEED = 1  # the fine-tuning runs' seed (batches and fresh heads)
MARGIN = 0.05  # fine-tuned first-epoch loss < scratch - MARGIN (see the module docstring)
SPEC = UNetSpec(1, 3, (4, 8, 16), ((3, 3, 3),) * 3, ((1, 1, 1), (2, 2, 2), (2, 2, 2)))


def _ckpt(tmp_path: Path, spec: UNetSpec, labels: list[int]) -> tuple[Path, dict]:
    torch.manual_seed(0)
    weights = build_network(spec).state_dict()
    path = tmp_path / "source.pt"
    torch.save({"network_weights": weights, "labels": labels,
                "spec": {"in_channels": spec.in_channels, "num_classes": spec.num_classes}}, path)
    return path, weights


@pytest.mark.parametrize("source_labels, heads_loaded", [([0, 1, 2], True), ([0, 1, 5], False)])
def test_heads_follow_the_label_set_even_with_matching_shapes(tmp_path, source_labels, heads_loaded):
    path, weights = _ckpt(tmp_path, SPEC, source_labels)
    torch.manual_seed(1)
    net = build_network(SPEC)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    report = load_pretrained(net, path, (0, 1, 2), 1)
    state = net.state_dict()
    for name in state:
        expect = weights[name] if (heads_loaded or not name.startswith("heads.")) else fresh[name]
        assert torch.equal(state[name], expect), name
    heads = [n for n in state if n.startswith("heads.")]
    assert heads and (set(heads) <= set(report.loaded)) == heads_loaded
    if not heads_loaded:
        assert all("label set differs" in report.skipped[h] for h in heads)


def test_missing_and_mismatching_tensors_are_reported(tmp_path):
    small = UNetSpec(1, 3, (4, 8), ((3, 3, 3),) * 2, ((1, 1, 1), (2, 2, 2)))
    path, _ = _ckpt(tmp_path, small, [0, 1, 2])
    report = load_pretrained(build_network(SPEC), path, (0, 1, 2), 1)
    reasons = set(report.skipped.values())
    assert "missing in the checkpoint" in reasons and any(r.startswith("shape mismatch") for r in reasons)
    assert "encoder.0.0.0.weight" in report.loaded
    text = "\n".join(report.lines(str(path)))
    assert "not loaded: encoder.2.0.0.weight (missing in the checkpoint)" in text


def test_channel_count_must_match(tmp_path):
    two = UNetSpec(2, 3, (4, 8, 16), ((3, 3, 3),) * 3, ((1, 1, 1), (2, 2, 2), (2, 2, 2)))
    path, _ = _ckpt(tmp_path, two, [0, 1, 2])
    with pytest.raises(SegkitError, match="2 input channel.*needs 1"):
        load_pretrained(build_network(SPEC), path, (0, 1, 2), 1)


def _merged_label_phantom(root: Path) -> Path:
    """A second phantom whose lesion is part of the organ: labels {0, 1} instead of {0, 1, 2}."""
    ds = make_phantom_dataset(root, n_train=3, n_test=0, seed=11, name="Dataset901_Merged",
                              extent_mm=(40.0, 48.0, 48.0))
    for path in (ds / "labelsTr").glob("*.nii.gz"):
        label, geometry = read_image(path)
        write_image((label > 0).astype(np.uint8), geometry, path)
    meta = json.loads((ds / "dataset.json").read_text(encoding="utf-8"))
    meta["labels"] = {"background": 0, "tissue": 1}
    (ds / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return ds


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.output


@dataclass(frozen=True)
class FirstEpoch:
    """One fine-tuning-sized training run on the target: its first-epoch mean loss and what it left."""

    loss: float
    options: dict
    log: str
    output: str


@dataclass(frozen=True)
class Transfer:
    source: Path
    target: Path
    work: Path
    pretrained: Path


def pretrain_and_transfer(root: Path) -> Transfer:
    """Pretrain 2d on the source phantom, move its plans to the merged-label phantom, preprocess it."""
    source = make_phantom_dataset(root / "raw", n_train=3, n_test=0, seed=3, extent_mm=(40.0, 48.0, 48.0))
    target = _merged_label_phantom(root / "raw")
    work = root / "work"
    _invoke(["run", str(source), "--work", str(work), "-c", "2d", "-f", "all", "-j", "1", "--epochs", "1",
             "--iters-per-epoch", str(PRETRAIN_ITERS), "--val-iters", "1", *CPU, "--seed", "7"])
    pretrained = work / source.name / "models" / "2d" / "fold_all" / "checkpoint_final.pt"
    _invoke(["plan", str(target), "--work", str(work), "--like", str(work / source.name / "plans.json"), "-j", "1"])
    _invoke(["preprocess", str(target), "--work", str(work), "-c", "2d", "-j", "1"])
    return Transfer(source, target, work, pretrained)


@pytest.fixture(scope="module")
def transfer(tmp_path_factory) -> Transfer:
    return pretrain_and_transfer(tmp_path_factory.mktemp("finetune"))


def first_epoch(t: Transfer, seed: int, pretrained: bool) -> FirstEpoch:
    """Train the target 2d fold all for one epoch of FIRST_EPOCH_ITERS iterations (from the checkpoint or
    from scratch; the same seed gives both the same batches and the same fresh heads)."""
    extra = ["--pretrained-weights", str(t.pretrained)] if pretrained else []
    fold = t.work / t.target.name / "models" / "2d" / "fold_all"
    log_path = fold / "training_log.txt"
    start = len(log_path.read_text(encoding="utf-8")) if log_path.is_file() else 0  # the log is appended to
    output = _invoke(["train", str(t.target), "--work", str(t.work), "-c", "2d", "-f", "all", "--epochs", "1",
                      "--iters-per-epoch", str(FIRST_EPOCH_ITERS), "--val-iters", "1", "--skip-validation", *CPU,
                      "--seed", str(seed), *extra])
    ckpt = torch.load(fold / "checkpoint_final.pt", weights_only=True)
    log = log_path.read_text(encoding="utf-8")[start:]
    return FirstEpoch(float(ckpt["logs"]["train_loss"][0]), ckpt["options"], log, output)


@pytest.fixture(scope="module")
def first_epochs(transfer) -> tuple[FirstEpoch, FirstEpoch]:
    """(fine-tuned, from scratch) first epochs on the target with the test seed."""
    return first_epoch(transfer, SEED, True), first_epoch(transfer, SEED, False)


@pytest.mark.slow
def test_plan_like_moves_the_plans_to_a_phantom_with_other_labels(transfer):
    plans = json.loads((transfer.work / transfer.target.name / "plans.json").read_text(encoding="utf-8"))
    source_plans = json.loads((transfer.work / transfer.source.name / "plans.json").read_text(encoding="utf-8"))
    assert plans["transferred_from"]["dataset_name"] == transfer.source.name
    assert plans["num_classes"] == 2 and plans["labels"] == {"background": 0, "tissue": 1}
    assert plans["configurations"] == source_plans["configurations"]
    fp = json.loads((transfer.work / transfer.target.name / "fingerprint.json").read_text(encoding="utf-8"))
    assert plans["foreground_intensity_properties_per_channel"] == fp["foreground_intensity_properties_per_channel"]


@pytest.mark.slow
def test_finetuning_records_and_logs_what_it_loaded(transfer, first_epochs):
    tuned, scratch = first_epochs
    assert tuned.options["pretrained_weights"] == str(transfer.pretrained.resolve())
    assert tuned.options["pretrained_sha256"] == hashlib.sha256(transfer.pretrained.read_bytes()).hexdigest()
    assert scratch.options["pretrained_weights"] is None
    assert "loaded: encoder.0.0.0.weight" in tuned.log and "not loaded: heads.0.weight (head re-initialised" in tuned.log
    assert "not loaded:" not in tuned.log.replace("not loaded: heads.", "")  # only the heads keep their fresh init
    assert "loaded: encoder.0.0.0.weight" in tuned.output  # CliRunner mixes stderr into the output
    assert "pretrained weights" not in scratch.log

    res = CliRunner().invoke(cli, ["train", str(transfer.target), "--work", str(transfer.work), "-c", "2d", "-f",
                                   "all", "--resume", "--pretrained-weights", str(transfer.pretrained)])
    assert res.exit_code == 2 and "--pretrained-weights only starts a run" in res.output


@pytest.mark.slow
def test_finetuning_starts_with_a_lower_loss_than_from_scratch(first_epochs):
    """The first epoch's mean training loss (CE + Dice, deep-supervision weighted) over FIRST_EPOCH_ITERS
    iterations, fine-tuned vs from scratch with the same seed (same batches, same fresh heads)."""
    tuned, scratch = first_epochs
    assert tuned.loss < scratch.loss - MARGIN, (tuned.loss, scratch.loss)


def test_plan_like_needs_the_same_channels(tmp_path):
    target = make_phantom_dataset(tmp_path / "raw", n_train=2, n_test=0, seed=4, extent_mm=(40.0, 48.0, 48.0))
    source = {"dataset_name": "Two", "channel_names": {"0": "T1", "1": "T2"},
              "configurations": {"3d_fullres": {"normalization": ["zscore", "zscore"]}}}
    path = tmp_path / "source_plans.json"
    path.write_text(json.dumps(source))
    res = CliRunner().invoke(cli, ["plan", str(target), "--work", str(tmp_path / "work"), "--like", str(path),
                                   "-j", "1"])
    assert res.exit_code == 2
    assert "2 input channel(s), the target dataset has 1" in res.output and "source_plans.json" in res.output
