"""A tiny but real export bundle of the phantom challenge, without training (reusable by any test).

``make_tiny_bundle(dataset, tmp)`` fingerprints and plans the phantom dataset with the real commands,
shrinks the ``3d_fullres`` plan to a three-stage U-Net (4-8-16 features, the planned patch; the plain U-Net, or
with ``architecture=RESENC`` the residual-encoder U-Net with ResEnc M's block counts), builds that network with a
fixed torch seed, saves ``checkpoint_final.pt`` in the format of docs/interfaces.md "Model folder and checkpoints" for each requested fold, writes
a hand-made ``selection.json`` and calls :func:`toolkit.bundle.make_bundle`. The segmentation head's
weights are scaled up so that the untrained network is decisive (large logit gaps): predictions are
then reproducible label for label across processes and machines, and not all background.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from toolkit.bundle import make_bundle
from toolkit.cli import cli
from toolkit.network.architecture import UNetSpec
from toolkit.network.unet import build_network
from toolkit.workdir import WorkDir

CONFIG = "3d_fullres"
TINY = {"conv_kernel_sizes": [[3, 3, 3]] * 3, "pool_strides": [[2, 2, 2]] * 2,
        "features_per_stage": [4, 8, 16]}
PLAIN = {"name": "plain_unet", "n_blocks_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2]}
RESENC = {"name": "residual_encoder_unet", "n_blocks_per_stage": [1, 3, 4], "n_conv_per_stage_decoder": [1, 1]}


def _cli(args: list[str]) -> None:
    cli.main(args=args, prog_name="segkit", standalone_mode=False)


def save_checkpoint(net: torch.nn.Module, spec: UNetSpec, path: Path, config: str = CONFIG) -> None:
    """A final checkpoint as docs/interfaces.md "Model folder and checkpoints" describes it (loads with ``weights_only=True``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": net.state_dict(), "optimizer_state": {}, "grad_scaler_state": None,
                "epoch": 1, "logs": {}, "rng_state": {}, "config": config, "spec": spec.to_fields(),
                "options": {"epochs": 1, "seed": 0}}, path)


def _decisive(net: torch.nn.Module, gain: float) -> None:
    """Scale the last 1x1x1 convolution(s) (the segmentation heads) so logits differ by a lot."""
    heads = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d) and m.kernel_size == (1, 1, 1)]
    with torch.no_grad():
        for m in heads:
            m.weight.mul_(gain)


def make_tiny_model(dataset: Path, work: Path, folds: tuple[int, ...] = (0,), seed: int = 0,
                    gain: float = 40.0, architecture: dict = PLAIN) -> WorkDir:
    """Fingerprint + plan ``dataset`` into ``work`` and write a tiny untrained model folder for ``folds``."""
    _cli(["fingerprint", str(dataset), "--work", str(work), "-j", "1"])
    _cli(["plan", str(dataset), "--work", str(work)])
    wd = WorkDir.for_dataset(work, dataset)
    plans = json.loads(wd.plans.read_text())
    plans["configurations"][CONFIG].update(TINY, architecture=architecture)
    ds = json.loads((dataset / "dataset.json").read_text())
    model_dir = wd.root / "models" / CONFIG
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "plans.json").write_text(json.dumps(plans, indent=1))
    shutil.copyfile(dataset / "dataset.json", model_dir / "dataset.json")
    num_classes = 1 + sum(1 for k, v in ds["labels"].items() if k != "background" and isinstance(v, int))
    spec = UNetSpec.from_plan(plans["configurations"][CONFIG], len(ds["channel_names"]), num_classes)
    for k in folds:
        torch.manual_seed(seed + k)
        net = build_network(spec)
        _decisive(net, gain)
        save_checkpoint(net, spec, model_dir / f"fold_{k}" / "checkpoint_final.pt")
    return wd


def write_selection(wd: WorkDir, folds: tuple[int, ...] = (0,), postprocessing: dict | None = None) -> None:
    """A hand-written selection.json choosing the tiny 3d_fullres model (what `segkit select` writes)."""
    decision = postprocessing or {"keep_largest_foreground": False, "foreground_labels": [1, 2],
                                  "keep_largest_per_class": []}
    selection = {"candidates": [{"name": CONFIG, "configurations": [CONFIG], "score": 0.5}],
                 "winner": {"name": CONFIG, "configurations": [CONFIG], "score": 0.5,
                            "folder": f"cv/{CONFIG}", "folds": {CONFIG: list(folds)}},
                 "postprocessing": {"decision": decision, "steps": []}}
    wd.selection.write_text(json.dumps(selection, indent=1))


def make_tiny_bundle(dataset: Path, tmp: Path, folds: tuple[int, ...] = (0,),
                     postprocessing: dict | None = None, architecture: dict = PLAIN) -> Path:
    """The bundle folder ``tmp/bundle`` of a tiny untrained phantom model (see the module docstring)."""
    work = tmp / "work"
    wd = make_tiny_model(dataset, work, folds, architecture=architecture)
    write_selection(wd, folds, postprocessing)
    out = tmp / "bundle"
    make_bundle(dataset, work, out)
    return out
