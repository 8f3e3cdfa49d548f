"""Acquisition axis: nnunetv2's transpose_forward/backward and plans vs segkit's, on the same fingerprints.

nnU-Net v2 puts the coarsest axis of the target spacing first and plans every configuration on the
transposed spacing and shape; segkit does the same but stores plan lists in the input's (z, y, x)
order (toolkit/planning/axes.py). This script builds fingerprints whose coarse axis is numpy axis
0, 1 or 2 (plus ties and an isotropic one), runs ``nnUNetv2_plan_experiment`` on each (a one-case
raw folder satisfies its reader lookup; the fingerprint file is written directly), prints where
segkit's plans differ once converted to nnU-Net's (working) order, and writes the peer's numbers to
``tests/golden/transpose_nnunet.json`` for tests/test_transpose.py (which never imports nnunetv2).

    .venv/bin/python bench/transpose_vs_nnunet.py        (SEGKIT_PEER_VENV=/path/to/peer-venv)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer import NNUNET_VERSION, peer_bin, peer_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GOLDEN = REPO / "tests" / "golden" / "transpose_nnunet.json"
STATS = {"mean": 100.0, "median": 100.0, "std": 20.0, "min": 0.0, "max": 300.0, "percentile_00_5": 40.0,
         "percentile_99_5": 180.0}
KEYS = ("spacing", "median_image_size_in_voxels", "patch_size", "batch_size", "pool_op_kernel_sizes",
        "conv_kernel_sizes")


def _cases(spacing, shape, n: int, seed: int, coarse_choices=None) -> tuple[list, list]:
    """``n`` per-case spacings/shapes jittered around ``spacing``/``shape`` (deterministic)."""
    rng = np.random.default_rng(seed)
    sp, sh = [], []
    for _ in range(n):
        s = [float(round(v * rng.uniform(0.9, 1.1), 4)) for v in spacing]
        if coarse_choices is not None:
            axis = int(np.argmax(spacing))
            s[axis] = float(coarse_choices[int(rng.integers(len(coarse_choices)))])
        sp.append(s)
        sh.append([int(round(v * rng.uniform(0.85, 1.15))) for v in shape])
    return sp, sh


def fingerprints() -> dict[str, dict]:
    """Name -> fingerprint (nnU-Net's four planning keys)."""
    specs = {
        "axial": ((4.0, 0.9, 0.9), (40, 220, 200), None),
        "sagittal_axis1": ((1.0, 4.0, 1.0), (180, 36, 200), None),
        "coarse_axis2": ((0.8, 0.8, 3.5), (220, 200, 44), None),
        "sagittal_axis1_thin_cases": ((0.9, 5.0, 0.9), (200, 16, 180), (2.0, 5.0, 5.0, 5.0, 6.0)),
        "coarse_axis2_mild": ((1.0, 1.0, 1.6), (160, 170, 100), None),
        "isotropic": ((1.0, 1.0, 1.0), (120, 140, 130), None),
        "tie_axes_1_2": ((1.0, 2.5, 2.5), (200, 90, 90), None),
        "sagittal_large": ((0.7, 3.0, 0.7), (400, 120, 420), None),
    }
    out = {}
    for i, (name, (spacing, shape, coarse)) in enumerate(specs.items()):
        if name in ("isotropic", "tie_axes_1_2"):  # exact ties, no jitter
            sp, sh = [list(spacing)] * 10, [list(shape)] * 10
        else:
            sp, sh = _cases(spacing, shape, 10, seed=i, coarse_choices=coarse)
        out[name] = {"spacings": sp, "shapes_after_crop": sh, "median_relative_size_after_cropping": 1.0,
                     "foreground_intensity_properties_per_channel": {"0": dict(STATS)}}
    return out


DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2}, "file_ending": ".nii.gz"}


def peer_plans(name: str, ident: int, fp: dict, tmp: Path) -> dict:
    """nnunetv2's nnUNetPlans.json for ``fp`` (default planner, 8 GB)."""
    from toolkit.io.images import Geometry, write_image

    env = peer_env(tmp / "raw", tmp / "pre", tmp / "res")
    ds_name = f"Dataset{ident:03d}_{name.replace('_', '')}"
    raw, pre = tmp / "raw" / ds_name, tmp / "pre" / ds_name
    write_image(np.ones((4, 4, 4), np.float32), Geometry((1.0,) * 3, (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1)),
                raw / "imagesTr" / "c_0000.nii.gz")
    (raw / "dataset.json").write_text(json.dumps({**DATASET_JSON, "numTraining": len(fp["spacings"])}))
    pre.mkdir(parents=True, exist_ok=True)
    (pre / "dataset_fingerprint.json").write_text(json.dumps(fp))
    subprocess.run([str(peer_bin("nnUNetv2_plan_experiment")), "-d", str(ident)], env=env, check=True,
                   capture_output=True)
    return json.loads((pre / "nnUNetPlans.json").read_text())


def summarize(plans: dict) -> dict:
    """The peer's transposes and, per plain configuration, the axis-dependent numbers (working order)."""
    configs = {}
    for cname, c in plans["configurations"].items():
        if "patch_size" not in c:
            continue
        arch = c["architecture"]["arch_kwargs"]
        configs[cname] = {"spacing": c["spacing"], "median_image_size_in_voxels": c["median_image_size_in_voxels"],
                          "patch_size": c["patch_size"], "batch_size": c["batch_size"],
                          "pool_op_kernel_sizes": arch["strides"][1:], "conv_kernel_sizes": arch["kernel_sizes"]}
    return {"transpose_forward": plans["transpose_forward"], "transpose_backward": plans["transpose_backward"],
            "configurations": configs}


def ours_in_working_order(fp: dict) -> dict:
    from toolkit.dataset import DatasetSpec
    from toolkit.planning import plan_experiment
    from toolkit.planning.axes import entry_to_working

    spec = DatasetSpec(Path("Dataset999_X"), DATASET_JSON["channel_names"], DATASET_JSON["labels"],
                       len(fp["spacings"]), ".nii.gz", {})
    plans, _ = plan_experiment(fp, spec)
    tf = plans["transpose_forward"]
    configs = {}
    for cname, c in plans["configurations"].items():
        w = entry_to_working(c, tf)
        configs[cname] = {"spacing": w["spacing"], "median_image_size_in_voxels": w["median_shape"],
                          "patch_size": w["patch_size"], "batch_size": w["batch_size"],
                          "pool_op_kernel_sizes": w["pool_strides"], "conv_kernel_sizes": w["conv_kernel_sizes"]}
    return {"transpose_forward": tf, "transpose_backward": plans["transpose_backward"], "configurations": configs}


def _same(a, b) -> bool:
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-5, atol=1e-4)) \
        if np.shape(a) == np.shape(b) else False


def compare(name: str, ours: dict, peer: dict) -> None:
    ok = ours["transpose_forward"] == peer["transpose_forward"] and \
        ours["transpose_backward"] == peer["transpose_backward"]
    print(f"{name}: transpose_forward ours {ours['transpose_forward']} nnunetv2 {peer['transpose_forward']}"
          f"{'' if ok else '  <-- DIFFERS'}")
    for cname in ("2d", "3d_fullres", "3d_lowres"):
        p, o = peer["configurations"].get(cname), ours["configurations"].get(cname)
        if p is None or o is None:
            print(f"  {cname}: ours {'yes' if o else 'no'}, nnunetv2 {'yes' if p else 'no'}")
            continue
        diffs = [f"{k} ours {o[k]} vs {p[k]}" for k in KEYS if not _same(o[k], p[k])]
        print(f"  {cname}: {'identical' if not diffs else '; '.join(diffs)}")


def main() -> None:
    fps = fingerprints()
    golden = {"nnunetv2": NNUNET_VERSION, "generated_by": "bench/transpose_vs_nnunet.py", "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, fp) in enumerate(fps.items()):
            peer = summarize(peer_plans(name, 850 + i, fp, Path(tmp)))
            compare(name, ours_in_working_order(fp), peer)
            golden["cases"][name] = {"fingerprint": fp, "nnunetv2": peer}
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN.relative_to(REPO)}")


if __name__ == "__main__":
    main()
