"""Peak memory and time of exporting a large prediction: 500x512x512, 4 classes.

Each variant runs in a fresh child process that builds the probabilities (K, z, y, x) float32 at the
plan's spacing, records its RSS, exports, and reports the peak RSS (``ru_maxrss``) above that
baseline, i.e. what export itself costs on top of the probabilities the predictor already holds.
Variants: segkit's slab-wise export with the torch and numpy backends, and the same with one slab
covering the whole volume (what a non-slabbed export costs). The case is anisotropic-looking in
neither direction: original spacing (1.0, 0.8, 0.8) mm, plan spacing (1.0, 0.85, 0.85) mm.

    .venv/bin/python bench/export_memory.py [--shape 500,512,512] [--classes 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, {repo!r})
import toolkit.preprocessing.export as ex
from toolkit.preprocessing.resampling import compute_new_shape
shape, k, backend, whole, out = {shape!r}, {k}, {backend!r}, {whole}, Path({out!r})
spacing, plan = [1.0, 0.8, 0.8], [1.0, 0.85, 0.85]
box = [[5, shape[0] - 5], [20, shape[1] - 20], [20, shape[2] - 20]]
crop = [b - a for a, b in box]
rs = list(compute_new_shape(crop, spacing, plan))
rng = np.random.default_rng(0)
probs = np.empty((k, *rs), np.float32)
for c in range(k):  # smooth-ish fields; exact values do not matter for memory
    probs[c] = rng.random(rs[2], dtype=np.float32)[None, None, :] + c * 0.01
probs /= probs.sum(0, keepdims=True)
import torch  # a predictor has torch loaded anyway; count its import in the baseline
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
props = dict(geometry=dict(spacing_xyz=spacing[::-1], origin_xyz=[0.0, 0.0, 0.0],
             direction=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]), shape_before_crop=list(shape), bbox=box,
             shape_after_crop=crop, spacing=spacing, target_spacing=plan, shape_after_resampling=rs)
plans = dict(labels={{str(i): i for i in range(k)}}, anisotropy_threshold=3)
if whole:
    ex.SLAB_BYTES = 2**50
t = time.perf_counter()
ex.export_prediction(probs, props, plans, "3d_fullres", out, ".nii.gz", backend=backend)
sec = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(seconds=sec, base_mib=base / 1024, peak_mib=peak / 1024,
                      probs_mib=probs.nbytes / 2**20, input_shape=rs)))
"""


def run_variant(shape, k, backend, whole, out: Path) -> dict:
    code = CHILD.format(repo=str(REPO), shape=list(shape), k=k, backend=backend, whole=whole, out=str(out))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="500,512,512")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--variants", default="torch,numpy,torch-whole",
                    help="comma list of torch, numpy, torch-whole, numpy-whole")
    args = ap.parse_args()
    shape = [int(s) for s in args.shape.split(",")]
    print(f"export of {'x'.join(map(str, shape))} with {args.classes} classes (one run per variant)")
    with tempfile.TemporaryDirectory(prefix="segkit-export-") as tmp:
        for variant in args.variants.split(","):
            backend, _, whole = variant.partition("-")
            r = run_variant(shape, args.classes, backend, bool(whole), Path(tmp) / f"{variant}.nii.gz")
            extra = r["peak_mib"] - r["base_mib"]
            print(f"  {variant:12s} {r['seconds']:7.1f} s  probabilities {r['probs_mib']:7.0f} MiB  "
                  f"peak RSS {r['peak_mib']:7.0f} MiB  (+{extra:.0f} MiB over the probabilities)")


if __name__ == "__main__":
    main()
