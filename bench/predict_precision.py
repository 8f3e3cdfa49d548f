"""CPU prediction in fp32 vs bf16 (``segkit predict --precision mixed``) with a *trained* model.

Speed alone can be measured with random weights (predict_vs_nnunet.py --precision mixed); whether
bf16 changes the segmentation needs a network that has learnt something. This takes the fold-0 model
that ``train_vs_nnunet.py`` leaves in its scratch folder (Hippocampus, 3d_fullres), predicts the
fold's validation cases with TTA in both precisions (CLI processes, alternating, ``--repeats``),
and prints s/case, the voxel agreement of the two label maps and each one's mean foreground Dice.

    .venv/bin/python bench/predict_precision.py [--scratch /tmp/segkit_bench_hippo60] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _hippo import DATASET, REPO  # noqa: E402
from preprocess_vs_nnunet import timed  # noqa: E402

SEGKIT = REPO / ".venv" / "bin" / "segkit"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "segkit_bench_hippo60")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from toolkit.evaluation.evaluate import evaluate_folder
    from toolkit.io.images import read_image

    raw, work = args.scratch / "raw" / DATASET, args.scratch / "segkit_work"
    model = work / DATASET / "models" / "3d_fullres"
    if not (model / "fold_0" / "checkpoint_final.pt").is_file():
        raise SystemExit(f"no trained model in {model}: run train_vs_nnunet.py --scratch {args.scratch} first")
    val = json.loads((work / DATASET / "splits_final.json").read_text(encoding="utf-8"))[0]["val"]
    with tempfile.TemporaryDirectory(prefix="segkit-precision-") as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for case in val:
            (inputs / f"{case}_0000.nii.gz").symlink_to(raw / "imagesTr" / f"{case}_0000.nii.gz")
        refs = Path(tmp) / "ref"
        refs.mkdir()
        for case in val:
            (refs / f"{case}.nii.gz").symlink_to(raw / "labelsTr" / f"{case}.nii.gz")
        seconds: dict[str, list[float]] = {"fp32": [], "mixed": []}
        for r in range(args.repeats):
            for precision in seconds:
                out = Path(tmp) / f"{precision}{r}"
                cmd = [str(SEGKIT), "predict", "-m", str(model), "-i", str(inputs), "-o", str(out), "--device", "cpu",
                       "--precision", precision]
                seconds[precision].append(timed(cmd)[0] / len(val))
        ds_json = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))
        dice = {p: evaluate_folder(Path(tmp) / f"{p}0", refs, ds_json, surface_metrics=False)["foreground_mean"]["Dice"]
                for p in seconds}
        same = total = 0
        for case in val:
            a = read_image(Path(tmp) / "fp320" / f"{case}.nii.gz")[0]
            b = read_image(Path(tmp) / "mixed0" / f"{case}.nii.gz")[0]
            same, total = same + int(np.sum(a == b)), total + a.size
    print(f"{DATASET} fold 0, {len(val)} validation cases, TTA on, CPU:")
    for p, s in seconds.items():
        print(f"  {p:5s}: {statistics.median(s):.2f} s/case (runs {', '.join(f'{x:.2f}' for x in s)}), "
              f"mean foreground Dice {dice[p]:.4f}")
    ratio = statistics.median(seconds["fp32"]) / statistics.median(seconds["mixed"])
    print(f"  bf16 speed-up {ratio:.2f}x, label agreement {same / total:.5%} of voxels")


if __name__ == "__main__":
    main()
