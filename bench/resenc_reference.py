"""Residual-encoder U-Net: segkit's UNetSpec numbers vs nnunetv2 2.8.1 / dynamic_network_architectures.

For a few argument sets (ResEnc M-like 3D, anisotropic 3D, multi-channel 2D, a small one with uneven
block counts and a stride-only skip, and the plain U-Net for comparison) the peer venv builds
``ResidualEncoderUNet`` / ``PlainConvUNet`` with the arguments nnunetv2's ResEnc planner writes
(conv bias, affine InstanceNorm eps 1e-5, LeakyReLU, no dropout) and reports:
  - the parameter count of the built module;
  - ``compute_conv_feature_map_size(patch)`` with and without deep supervision;
  - ``ExperimentPlanner.static_estimate_VRAM_usage`` (what nnunetv2's planner compares with its
    reference value; the network is built without deep supervision there).
segkit's ``UNetSpec.num_parameters()`` / ``feature_map_voxels()`` are printed beside them with the
ratio (1.0 means equal). ``--write`` stores the peer's numbers as the golden file the tests read
(tests/data/resenc_reference.json); nothing of nnunetv2 is imported by segkit or its tests.

The plain U-Net rows differ by one head on purpose: nnU-Net builds (and, with deep supervision, runs)
a segmentation head on the lowest decoder resolution that its loss never uses (weight 0); segkit's
plain U-Net omits it, so its parameters are printed with that head added back and its
deep-supervision feature maps are short by that head's output. The ResEnc network keeps the head.

    .venv/bin/python bench/resenc_reference.py [--write tests/data/resenc_reference.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer import peer_python  # noqa: E402

from toolkit.io.atomic import atomic_write_json  # noqa: E402
from toolkit.network.architecture import UNetSpec  # noqa: E402

RESENC_M_BLOCKS = [1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6]  # nnUNetPlannerResEncM/L/XL encoder blocks


def _case(name: str, arch: str, cin: int, ncls: int, feats: list[int], kernels: list[list[int]],
          strides: list[list[int]], blocks: list[int], dec: list[int], patch: list[int]) -> dict:
    return {"name": name, "architecture": arch, "in_channels": cin, "num_classes": ncls, "features": feats,
            "kernel_sizes": kernels, "strides": strides, "n_blocks_per_stage": blocks,
            "n_conv_per_stage_decoder": dec, "patch_size": patch}


RES, PLAIN = "residual_encoder_unet", "plain_unet"
CASES = [
    _case("resenc_m_3d_iso", RES, 1, 3, [32, 64, 128, 256, 320, 320], [[3, 3, 3]] * 6,
          [[1, 1, 1]] + [[2, 2, 2]] * 5, RESENC_M_BLOCKS[:6], [1] * 5, [128, 128, 128]),
    _case("resenc_3d_aniso", RES, 2, 4, [32, 64, 128, 256, 320, 320, 320],
          [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
          [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]],
          RESENC_M_BLOCKS[:7], [1] * 6, [16, 256, 192]),
    _case("resenc_2d_multichannel", RES, 4, 5, [32, 64, 128, 256, 512, 512, 512, 512], [[3, 3]] * 8,
          [[1, 1]] + [[2, 2]] * 7, RESENC_M_BLOCKS[:8], [1] * 7, [512, 384]),
    _case("resenc_small_uneven", RES, 2, 3, [4, 8, 16, 16], [[3, 3, 3], [3, 3, 3], [1, 3, 3], [3, 3, 3]],
          [[1, 1, 1], [2, 2, 2], [1, 2, 2], [2, 2, 1]], [2, 1, 2, 3], [2, 1, 3], [16, 24, 16]),
    _case("resenc_small_2d", RES, 1, 2, [8, 16, 32], [[3, 3]] * 3, [[1, 1], [2, 2], [2, 2]], [1, 2, 2], [1, 1],
          [32, 48]),
    _case("plain_3d", PLAIN, 1, 3, [32, 64, 128, 256, 320, 320], [[3, 3, 3]] * 6,
          [[1, 1, 1]] + [[2, 2, 2]] * 5, [2] * 6, [2] * 5, [128, 128, 128]),
    _case("plain_2d", PLAIN, 2, 4, [32, 64, 128, 256, 512, 512, 512], [[3, 3]] * 7, [[1, 1]] + [[2, 2]] * 6,
          [2] * 7, [2] * 6, [256, 320]),
]

PEER_SCRIPT = r"""
import json, sys
import torch
from torch import nn
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

out = []
for c in json.load(sys.stdin):
    nd = len(c["patch_size"])
    conv = "torch.nn.Conv%dd" % nd
    kwargs = {"n_stages": len(c["features"]), "features_per_stage": c["features"], "conv_op": conv,
              "kernel_sizes": c["kernel_sizes"], "strides": c["strides"], "conv_bias": True,
              "norm_op": "torch.nn.InstanceNorm%dd" % nd, "norm_op_kwargs": {"eps": 1e-5, "affine": True},
              "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
              "nonlin_kwargs": {"inplace": True}, "n_conv_per_stage_decoder": c["n_conv_per_stage_decoder"]}
    if c["architecture"] == "residual_encoder_unet":
        cls, name = ResidualEncoderUNet, "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
        kwargs["n_blocks_per_stage"] = c["n_blocks_per_stage"]
    else:
        cls, name = PlainConvUNet, "dynamic_network_architectures.architectures.unet.PlainConvUNet"
        kwargs["n_conv_per_stage"] = c["n_blocks_per_stage"]
    req = ("conv_op", "norm_op", "dropout_op", "nonlin")
    planner = ExperimentPlanner.static_estimate_VRAM_usage(c["patch_size"], c["in_channels"], c["num_classes"],
                                                           name, kwargs, req)
    built = dict(kwargs, conv_op=getattr(nn, conv.split(".")[-1]),
                 norm_op=getattr(nn, kwargs["norm_op"].split(".")[-1]), nonlin=nn.LeakyReLU)
    fmap = {}
    for ds in (True, False):
        net = cls(input_channels=c["in_channels"], num_classes=c["num_classes"], deep_supervision=ds, **built)
        fmap["deep_supervision" if ds else "no_deep_supervision"] = int(net.compute_conv_feature_map_size(c["patch_size"]))
    out.append(dict(c, peer_num_parameters=sum(p.numel() for p in net.parameters()),
                    peer_feature_map_voxels=fmap, peer_planner_estimate=int(planner)))
import dynamic_network_architectures, importlib.metadata as md
print(json.dumps({"nnunetv2": md.version("nnunetv2"),
                  "dynamic_network_architectures": md.version("dynamic_network_architectures"), "cases": out}))
"""


def spec_of(case: dict, deep_supervision: bool) -> UNetSpec:
    """segkit's spec for a reference case."""
    return UNetSpec.from_fields(dict(case, deep_supervision=deep_supervision))


def lowest_head(case: dict) -> int:
    """Parameters of the head nnU-Net builds on the lowest decoder resolution (the plain U-Net omits it)."""
    return case["features"][-2] * case["num_classes"] + case["num_classes"]


def compare(reference: dict) -> list[tuple[str, str, int, int]]:
    """(case, quantity, segkit, peer) rows; plain U-Net parameters corrected by the omitted head."""
    rows = []
    for c in reference["cases"]:
        ours, ours_inf = spec_of(c, True), spec_of(c, False)
        extra = lowest_head(c) if c["architecture"] == PLAIN else 0
        rows.append((c["name"], "parameters" + (" (+lowest head)" if extra else ""),
                     ours.num_parameters() + extra, c["peer_num_parameters"]))
        rows.append((c["name"], "feature maps, deep supervision", ours.feature_map_voxels(c["patch_size"]),
                     c["peer_feature_map_voxels"]["deep_supervision"]))
        rows.append((c["name"], "feature maps, inference", ours_inf.feature_map_voxels(c["patch_size"]),
                     c["peer_feature_map_voxels"]["no_deep_supervision"]))
        rows.append((c["name"], "planner estimate", ours_inf.feature_map_voxels(c["patch_size"]),
                     c["peer_planner_estimate"]))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", type=Path, help="store the peer's numbers here (golden file for the tests)")
    args = ap.parse_args()
    proc = subprocess.run([str(peer_python()), "-c", PEER_SCRIPT], input=json.dumps(CASES), text=True,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"peer failed:\n{proc.stderr[-3000:]}")
    reference = json.loads(proc.stdout.strip().splitlines()[-1])
    reference["generator"] = "bench/resenc_reference.py"
    print(f"peer: nnunetv2 {reference['nnunetv2']}, dynamic_network_architectures "
          f"{reference['dynamic_network_architectures']}")
    print(f"{'case':26s} {'quantity':34s} {'segkit':>14s} {'peer':>14s} {'ratio':>8s}")
    for name, what, ours, peer in compare(reference):
        print(f"{name:26s} {what:34s} {ours:14d} {peer:14d} {ours / peer:8.6f}")
    if args.write:
        atomic_write_json(args.write, reference, indent=1)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
