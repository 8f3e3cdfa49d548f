"""The largest CT a CPU-only grand-challenge job predicts in time and memory: segkit vs nnunetv2's predictor.

The platform's default job (containers/README.md "The platform's default job"): no GPU, 8 GB instance,
7168 MB for the process (the shim sets RLIMIT_DATA), 2 vCPUs, 20 minutes per job in a challenge phase.
Each prediction here runs under those limits as a process: RLIMIT_DATA = --memory (inherited by every
child, as under the shim), CPU affinity = --cpus cores, killed at --time-limit, and the peak RSS of the
whole process tree must stay within --memory too (the instance has no more). Both tools get the same
plan (nnU-Net's planner on a synthetic CT training set; segkit's plans.json copied from its 3d_fullres,
as in predict_vs_nnunet.py), the same random-weight network, step 0.5, mirroring TTA on, one fold, the
same torch build; nnUNetv2_predict runs with its defaults. Test cases are synthetic CT cubes of growing
side at the plan's spacing (air, a body, an organ; no resampling needed), tried from small to large,
alternating the tools per size; a tool stops at its first size that does not fit. The answer: the
largest fitting case per tool, in voxels, and their ratio. Each run also records its network forward
passes (sliding windows x 8 mirrorings): the time grows in steps, when a window count grows, not with the
voxels. So the report adds, per tool, the next side above its largest fit whose window count grows and
that size's projected time at the measured seconds per forward pass (``projection_above_largest_fit``;
a projection, labelled as one, for sizes whose run would only confirm a 20-minute timeout).

Why processes and not containers: segkit packages its own image, but there is no nnunetv2 image to run
beside it; the same limits on both processes (from one venv per tool, same torch) are the fair
comparison. The self-test of `segkit package` applies the same limits to the real container.

    .venv/bin/python bench/container_capacity.py [--sizes 96,128,192,256,320,384,448,512]
        [--memory 7168m] [--cpus 2] [--time-limit 1200] [--out result.json]

Measured: see containers/README.md "Capacity of the default job".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer import peer_bin, peer_env  # noqa: E402
from predict_vs_nnunet import make_models  # noqa: E402
from preprocess_vs_nnunet import SYNTH, ds_id, tree_rss_mib  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # toolkit: synthetic cases, window counts


def synthetic_ct(side: int, spacing_zyx: list[float], path: Path, seed: int = 0) -> int:
    """A CT-like cube (HU: air -1000, body ~40 with noise, an organ ~120) at the plan's spacing."""
    from toolkit.io.images import Geometry, write_image

    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:side, :side, :side]
    c = (side - 1) / 2
    body = ((z - c) / (0.45 * side)) ** 2 + ((y - c) / (0.40 * side)) ** 2 + ((x - c) / (0.45 * side)) ** 2 <= 1
    organ = ((z - c) / (0.15 * side)) ** 2 + ((y - 0.6 * side) / (0.12 * side)) ** 2 \
        + ((x - 0.4 * side) / (0.15 * side)) ** 2 <= 1
    img = np.full((side, side, side), -1000.0, np.float32)
    img[body] = 40.0
    img[organ] = 120.0
    img += rng.normal(0, 20, img.shape).astype(np.float32)
    sp = tuple(float(s) for s in reversed(spacing_zyx))
    write_image(img, Geometry(sp, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)), path)
    return side ** 3


def forward_passes(side: int, patch: list[int], step: float = 0.5, mirrors: int = 8) -> int:
    """Network forward passes for a cube of ``side``: windows (segkit's rule, the same as nnunetv2's
    ``compute_steps_for_sliding_window``; a side below the patch is padded to it) x mirroring passes."""
    from toolkit.inference.sliding_window import window_starts

    starts = window_starts([max(side, p) for p in patch], patch, step)
    return int(np.prod([len(s) for s in starts])) * mirrors


def projection(runs: list[dict], patch: list[int], time_limit: float) -> dict | None:
    """For the largest size each tool fitted: the next side whose window count grows, its forward passes
    and its time at the measured seconds per forward pass (an upper bound on the rate: that run's fixed
    start-up and export are counted as forward time). Says whether sizes above the series can fit."""
    out = {}
    for tool in sorted({r["tool"] for r in runs}):
        fits = [r for r in runs if r["tool"] == tool and r["problem"] is None]
        if not fits:
            continue
        best = max(fits, key=lambda r: r["side"])
        per_pass = best["seconds"] / best["forward_passes"]
        side = best["side"] + 1
        while forward_passes(side, patch) == best["forward_passes"]:
            side += 1
        n = forward_passes(side, patch)
        out[tool] = {"from_side": best["side"], "s_per_forward_pass": round(per_pass, 2), "next_side": side,
                     "next_forward_passes": n, "projected_s": round(n * per_pass), "fits": n * per_pass <= time_limit}
    return out or None


def _limits(memory_mb: int, cpus: int):
    def apply() -> None:
        limit = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cpus])
    return apply


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry.name)] = int(Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1])
    found, todo = [], [root]
    while todo:
        children = [p for p, pp in parents.items() if pp == todo.pop()]
        found += children
        todo += children
    return found


def run_job(cmd: list[str], env: dict, memory_mb: int, cpus: int, time_limit: float) -> dict:
    """One prediction under the job's limits: seconds, peak tree RSS, and why it did not fit (or None)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_limits(memory_mb, cpus))
    peak, problem = 0.0, None
    while proc.poll() is None:
        peak = max(peak, tree_rss_mib(proc.pid))
        if time.perf_counter() - start > time_limit:
            problem = f"over the {time_limit:.0f} s time limit"
        elif peak > memory_mb:
            problem = f"process tree RSS {peak:.0f} MiB over {memory_mb} MiB"
        if problem:
            for pid in [*_descendants(proc.pid), proc.pid]:  # its workers too, each by its id
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.2)
    err = proc.stderr.read().decode(errors="replace")
    if problem is None and proc.returncode:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        problem = f"exit {proc.returncode}: {lines[-1][:200] if lines else ''}"
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": round(peak), "problem": problem}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="96,128,192,256,320,384,448,512", help="cube sides, voxels")
    ap.add_argument("--memory", type=int, default=7168, help="MiB")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=1200.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="segkit-capacity-") as tmp_s:
        tmp = Path(tmp_s)
        raw = tmp / "raw"
        subprocess.run([sys.executable, str(SYNTH), "--preset", "ct", "-n", "6", "--id", "504", "--out", str(raw)],
                       check=True, capture_output=True)
        dataset = next(raw.glob("Dataset504_*"))
        env = peer_env(raw, tmp / "pre", tmp / "res")
        plans, model = make_models(dataset, env, tmp / "work")
        cfg = plans["configurations"]["3d_fullres"]
        report = {"limits": {"memory_mib": args.memory, "cpus": args.cpus, "time_limit_s": args.time_limit},
                  "plan": {"patch_size": cfg["patch_size"], "spacing": cfg["spacing"],
                           "features_per_stage": cfg["features_per_stage"]}, "runs": []}
        print(json.dumps(report["plan"]), flush=True)
        ours_env = {**os.environ, "PYTHONPATH": str(REPO)}
        alive = {"segkit": True, "nnunetv2": True}
        for side in sizes:
            case_dir = tmp / f"cases{side}"
            case_dir.mkdir()
            voxels = synthetic_ct(side, cfg["spacing"], case_dir / f"ct{side}_0000.nii.gz")
            cmds = {"segkit": ([sys.executable, "-m", "toolkit.cli", "predict", "-m", str(model), "-i", str(case_dir),
                                "-o", str(tmp / f"ours{side}"), "--folds", "0", "--device", "cpu", "--step", "0.5"],
                               ours_env),
                    "nnunetv2": ([str(peer_bin("nnUNetv2_predict")), "-i", str(case_dir), "-o", str(tmp / f"peer{side}"),
                                  "-d", ds_id(dataset), "-c", "3d_fullres", "-f", "0", "-device", "cpu",
                                  "-step_size", "0.5", "--disable_progress_bar"], env)}
            for tool, (cmd, tool_env) in cmds.items():
                if not alive[tool]:
                    continue
                run = {"tool": tool, "side": side, "voxels": voxels,
                       "forward_passes": forward_passes(side, cfg["patch_size"]),
                       **run_job(cmd, tool_env, args.memory, args.cpus, args.time_limit)}
                alive[tool] = run["problem"] is None
                report["runs"].append(run)
                print(json.dumps(run), flush=True)
            if not any(alive.values()):
                break
        largest = {tool: max((r["voxels"] for r in report["runs"] if r["tool"] == tool and r["problem"] is None),
                             default=0) for tool in alive}
        report["largest_voxels"] = largest
        report["all_sizes_fit"] = [tool for tool, ok in alive.items() if ok]  # the bound lies above --sizes
        report["projection_above_largest_fit"] = projection(report["runs"], cfg["patch_size"], args.time_limit)
        if largest["nnunetv2"]:
            report["ratio_segkit_over_nnunetv2"] = round(largest["segkit"] / largest["nnunetv2"], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
