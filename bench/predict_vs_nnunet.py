"""Prediction per case on CPU: ``segkit predict`` vs ``nnUNetv2_predict`` at identical settings.

Same raw test images (``make_synth_dataset.py --preset small``), same plan (nnU-Net's planner; its
3d_fullres spacing, normalisation, patch and U-Net topology copied into segkit's plans.json), same
network size, step 0.5, TTA on and off, one fold. Both networks have random weights (the computation,
not the segmentation, is measured; nnU-Net's checkpoint is written with its own network builder).
Runs are CLI processes (interpreter start and model loading included), alternating A B A B; medians,
the ratio and the peak RSS of the process tree. nnUNetv2_predict runs with its defaults (-npp 3 -nps 3).
The floor: median time of one bare forward pass of the same network on one window (in-process, batch 1)
x the number of windows x mirror passes over all cases.

    .venv/bin/python bench/predict_vs_nnunet.py [--cases 4] [--repeats 2] [--precision auto|fp32|mixed]

Latest run, 2-core machine with nothing else running (2026-11-27), 4 cases of ~48x64x64 voxels,
patch 48x64x64, features 32..320:
  TTA on : segkit 3.39 s/case (runs 13.2, 13.9 s), nnunetv2 6.98 s/case (27.2, 28.6 s): 2.06x;
           floor 3.05 s/case (segkit spends 90% of its time in the forward passes, nnunetv2 44%);
           peak RSS 694 MiB vs 6218 MiB
  TTA off: segkit 0.88 s/case (3.5, 3.6 s), nnunetv2 4.57 s/case (18.2, 18.4 s): 5.16x;
           floor 0.36 s/case; peak RSS 701 MiB vs 6217 MiB
With --precision mixed (bf16 autocast on this Zen 4 CPU; the floor stays the fp32 forward pass):
  TTA on : segkit 1.82 s/case, nnunetv2 7.05 s/case: 3.88x; peak RSS 566 MiB vs 6218 MiB
  TTA off: segkit 0.65 s/case, nnunetv2 4.39 s/case: 6.71x
  (label agreement with fp32 on a trained model: predict_precision.py, 99.996% of voxels)
An earlier run on the same machine while other work loaded it (load 3-7) gave 1.40x / 2.92x: on a
loaded machine both sides slow down unevenly, so compare runs from a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer import peer_bin, peer_env, peer_python  # noqa: E402
from preprocess_vs_nnunet import SYNTH, ds_id, plan_both, timed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEGKIT = REPO / ".venv" / "bin" / "segkit"
PEER_MODEL = """
import inspect, json, os, shutil, sys, torch
from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
pre, out = sys.argv[1], sys.argv[2]
plans, ds = load_json(pre + '/nnUNetPlans.json'), load_json(pre + '/dataset.json')
pm = PlansManager(plans); cm = pm.get_configuration('3d_fullres')
nin = determine_num_input_channels(pm, cm, ds); nout = pm.get_label_manager(ds).num_segmentation_heads
torch.manual_seed(0)
if 'plans_manager' in inspect.signature(nnUNetTrainer.build_network_architecture).parameters:
    net = nnUNetTrainer.build_network_architecture(pm, cm, nin, nout, enable_deep_supervision=False)
else:
    net = nnUNetTrainer.build_network_architecture(cm.network_arch_class_name, cm.network_arch_init_kwargs,
        cm.network_arch_init_kwargs_req_import, nin, nout, enable_deep_supervision=False)
os.makedirs(out + '/fold_0', exist_ok=True)
shutil.copy(pre + '/nnUNetPlans.json', out + '/plans.json'); shutil.copy(pre + '/dataset.json', out + '/dataset.json')
torch.save({'network_weights': net.state_dict(), 'trainer_name': 'nnUNetTrainer',
            'init_args': {'configuration': '3d_fullres'}, 'inference_allowed_mirroring_axes': (0, 1, 2)},
           out + '/fold_0/checkpoint_final.pth')
"""


def make_models(dataset: Path, env: dict, work: Path) -> tuple[dict, Path]:
    """nnU-Net model folder (its builder) and segkit model folder with the same plan and topology."""
    peer_plans = plan_both(dataset, env, work, jobs=2)
    pre = Path(env["nnUNet_preprocessed"]) / dataset.name
    shutil.copy(dataset / "dataset.json", pre / "dataset.json")
    peer_out = Path(env["nnUNet_results"]) / dataset.name / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    subprocess.run([str(peer_python()), "-c", PEER_MODEL, str(pre), str(peer_out)], check=True)
    cfg = peer_plans["configurations"]["3d_fullres"]
    arch = cfg["architecture"]["arch_kwargs"]
    plans = json.loads((work / dataset.name / "plans.json").read_text())
    plans["configurations"]["3d_fullres"].update(
        patch_size=cfg["patch_size"], conv_kernel_sizes=arch["kernel_sizes"], pool_strides=arch["strides"][1:],
        features_per_stage=arch["features_per_stage"])
    model = work / dataset.name / "models" / "3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "plans.json").write_text(json.dumps(plans))
    shutil.copy(dataset / "dataset.json", model / "dataset.json")
    _save_segkit_checkpoint(plans, model / "fold_0" / "checkpoint_final.pt")
    return plans, model


def _network(plans: dict):
    from toolkit.network.architecture import UNetSpec
    from toolkit.network.unet import build_network

    return build_network(UNetSpec.from_plan(plans["configurations"]["3d_fullres"], 1, 3))


def _save_segkit_checkpoint(plans: dict, path: Path) -> None:
    import torch

    torch.manual_seed(0)
    net = _network(plans)
    s = net.spec
    spec = {"in_channels": s.in_channels, "num_classes": s.num_classes, "features": list(s.features),
            "kernel_sizes": [list(k) for k in s.kernel_sizes], "strides": [list(t) for t in s.strides],
            "deep_supervision": s.deep_supervision}
    torch.save({"network_weights": net.state_dict(), "spec": spec, "config": "3d_fullres", "epoch": 0,
                "options": {}, "logs": {}, "rng_state": {}, "optimizer_state": {}, "grad_scaler_state": None}, path)


def floor_seconds(plans: dict, images: list[Path], tta: bool) -> float:
    """Bare forward passes: one window's median time x windows x mirror passes, over all cases."""
    import torch

    from toolkit.inference.sliding_window import _pad_to_patch, _windows
    from toolkit.preprocessing.preprocess import preprocess_case

    patch = plans["configurations"]["3d_fullres"]["patch_size"]
    net = _network(plans).eval()
    net.deep_supervision = False
    x = torch.randn(1, 1, *patch)
    with torch.inference_mode():
        net(x)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
    windows = 0
    for img in images:
        data, _, _ = preprocess_case([img], None, plans, "3d_fullres")
        padded, _ = _pad_to_patch(torch.from_numpy(data), patch)
        windows += len(_windows(padded.shape[1:], patch, (0.5,) * 3))
    return statistics.median(times) * windows * (8 if tta else 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "mixed"],
                    help="segkit predict --precision (mixed: bf16 on CPU); nnunetv2 predicts fp32 on CPU")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="segkit-predict-bench-") as tmp:
        tmp = Path(tmp)
        raw = tmp / "raw"
        subprocess.run([sys.executable, str(SYNTH), "--preset", "small", "-n", "6", "--num-test", str(args.cases),
                        "--id", "501", "--out", str(raw)], check=True, capture_output=True)
        dataset = raw / "Dataset501_Synth"
        if not dataset.is_dir():
            dataset = next(raw.glob("Dataset501_*"))
        env = peer_env(raw, tmp / "pre", tmp / "res")
        plans, model = make_models(dataset, env, tmp / "work")
        images = sorted((dataset / "imagesTs").glob("*_0000.nii.gz"))
        print(f"{dataset.name}: {len(images)} test cases, patch {plans['configurations']['3d_fullres']['patch_size']}, "
              f"features {plans['configurations']['3d_fullres']['features_per_stage']}, step 0.5, 1 fold, CPU")
        for tta in (True, False):
            runs: dict[str, list] = {"segkit": [], "nnunetv2": []}
            for r in range(args.repeats):
                ours = [str(SEGKIT), "predict", "-m", str(model), "-i", str(dataset / "imagesTs"), "-o",
                        str(tmp / f"ours{r}{tta}"), "--folds", "0", "--device", "cpu", "--step", "0.5",
                        "--precision", args.precision]
                peer = [str(peer_bin("nnUNetv2_predict")), "-i", str(dataset / "imagesTs"), "-o",
                        str(tmp / f"peer{r}{tta}"), "-d", ds_id(dataset), "-c", "3d_fullres", "-f", "0",
                        "-device", "cpu", "-step_size", "0.5", "--disable_progress_bar"]
                runs["segkit"].append(timed(ours + ([] if tta else ["--no-tta"])))
                runs["nnunetv2"].append(timed(peer + ([] if tta else ["--disable_tta"]), env))
            floor = floor_seconds(plans, images, tta) / len(images)
            print(f"\nTTA {'on (8 mirror passes)' if tta else 'off'}: floor {floor:.2f} s/case (bare forward passes)")
            med = {}
            for tool, rs in runs.items():
                med[tool] = statistics.median(s for s, _ in rs) / len(images)
                print(f"  {tool:9s} median {med[tool]:6.2f} s/case  peak RSS {max(p for _, p in rs):6.0f} MiB  "
                      f"runs: {', '.join(f'{s:.1f}' for s, _ in rs)} s  ({floor / med[tool]:.0%} of time is the floor)")
            print(f"  per-case speed ratio nnunetv2/segkit: {med['nnunetv2'] / med['segkit']:.2f}x")


if __name__ == "__main__":
    main()
