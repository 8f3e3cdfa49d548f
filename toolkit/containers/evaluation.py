"""The evaluation container's entry point: score an algorithm's outputs exactly as grand-challenge runs it.

grand-challenge gives an evaluation container ``/input/predictions.json`` (one entry per algorithm job:
``pk``, ``inputs``, ``outputs``, ``status``), each job's outputs under ``/input/<pk>/output/<relative_path>/``
and the phase's ground truth extracted to ``/opt/ml/input/data/ground_truth/``; it reads
``/output/metrics.json``. The reference of a job is ``<case><ending>`` in the ground-truth folder, where
``<case>`` is the name of the job's image in the configured ground-truth socket (``ground_truth_socket``
in settings.json: the YAML's ``container.ground_truth_socket``, else its first input socket) without its
ending (and without a trailing ``_0000`` channel suffix). The order of a job's inputs in
predictions.json is arbitrary, so with several input sockets (MS lesions: FLAIR, T1, ...) the socket is
named, never taken by position. Metrics per case and class (or region, for region labels; voxels of an
``ignore`` label excluded): Dice, IoU, HD95, NSD (toolkit.evaluation), then per-class mean/std/median
and the mean over foreground classes in ``aggregates``.

``python -m toolkit.containers.evaluation [--settings ...]``; errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.dataset.labels import target_key, target_values
from toolkit.errors import SegkitError
from toolkit.io.atomic import atomic_write_json
from toolkit.io.images import read_image, supported_endings

SETTINGS = Path("/opt/segkit/settings.json")
GROUND_TRUTH = Path("/opt/ml/input/data/ground_truth")
REPORTED = ("Dice", "IoU", "HD95", "NSD")


def case_name(image_name: str) -> str:
    """``case_0000.nii.gz`` -> ``case``: the ground-truth name of a job's input image."""
    name = image_name
    for ending in sorted(supported_endings() + [".tif", ".tiff"], key=len, reverse=True):
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
            break
    return re.sub(r"_\d{4}$", "", name)


def _one_image(folder: Path, what: str) -> Path:
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
    if len(files) != 1:
        raise SegkitError(f"{what}: expected exactly one image, found {len(files)}", folder)
    return files[0]


def _reference(gt_dir: Path, case: str) -> Path:
    for ending in supported_endings():
        if (gt_dir / f"{case}{ending}").is_file():
            return gt_dir / f"{case}{ending}"
    raise SegkitError(f"no ground truth for case {case!r} (<case><ending>)", gt_dir)


def case_of_job(job: dict[str, Any], socket: str | None) -> str:
    """The ground-truth case of a job: the name of its image in ``socket`` (None: its only image input)."""
    pk = str(job.get("pk"))
    inputs = [i for i in job.get("inputs", []) if isinstance(i.get("image"), dict) and i["image"].get("name")]
    if socket is None:
        if len(inputs) != 1:
            raise SegkitError(f"algorithm job {pk} has {len(inputs)} input images; name the one whose file name "
                              "is the case in container.ground_truth_socket")
        return case_name(inputs[0]["image"]["name"])
    found = [i for i in inputs if i.get("interface", {}).get("slug") == socket]
    if not found:
        slugs = ", ".join(str(i.get("interface", {}).get("slug")) for i in inputs) or "none"
        raise SegkitError(f"algorithm job {pk} has no input image in the ground-truth socket {socket!r} "
                          f"(its image inputs: {slugs})")
    return case_name(found[0]["image"]["name"])


def job_files(job: dict[str, Any], input_dir: Path, gt_dir: Path, output_slug: str,
              default_rel: str, gt_socket: str | None = None) -> tuple[str, Path, Path]:
    """(case, prediction, reference) of one predictions.json entry."""
    pk = str(job.get("pk"))
    if job.get("status", "Succeeded") != "Succeeded":
        raise SegkitError(f"algorithm job {pk} did not succeed (status {job.get('status')!r})")
    out = next((o for o in job.get("outputs", []) if o.get("interface", {}).get("slug") == output_slug), None)
    if out is None:
        raise SegkitError(f"algorithm job {pk} has no output {output_slug!r}", input_dir / "predictions.json")
    rel = out["interface"].get("relative_path") or default_rel
    pred = _one_image(input_dir / pk / "output" / rel, f"job {pk} output {output_slug}")
    case = case_of_job(job, gt_socket)
    return case, pred, _reference(gt_dir, case)


def score_case(pred_path: Path, ref_path: Path, labels: list, tolerance_mm: float,
               ignore: int | None = None) -> dict[str, Any]:
    """Metrics of one case per label value or region (tuple of values), keyed by ``target_key``;
    reference voxels holding ``ignore`` count nowhere."""
    from toolkit.evaluation.metrics import case_metrics

    pred, pred_geo = read_image(pred_path)
    ref, ref_geo = read_image(ref_path)
    if pred.shape != ref.shape or (diff := pred_geo.differs_from(ref_geo)):
        what = f"shape {pred.shape} vs {ref.shape}" if pred.shape != ref.shape else diff
        raise SegkitError(f"prediction is not on the reference grid ({what})", pred_path)
    metrics = case_metrics(pred, ref, labels, ref_geo.spacing, tolerance_mm, ignore)
    return {lb: {k: m.get(k) for k in REPORTED} for lb, m in metrics.items()}


def aggregate(per_case: dict[str, dict[str, Any]], names: dict[str, str]) -> dict[str, Any]:
    """Mean, std and median per class (or region) and metric (cases where a metric is undefined are left
    out); ``names`` maps metric keys to names."""
    out: dict[str, Any] = {}
    for key, name in names.items():
        out[name] = {}
        for k in REPORTED:
            vals = [c[key][k] for c in per_case.values() if c[key][k] is not None]
            out[name][k] = ({"mean": float(np.mean(vals)), "std": float(np.std(vals)),
                             "median": float(np.median(vals)), "n": len(vals)} if vals else None)
    out["foreground_mean"] = {k: (float(np.mean(m)) if (m := [out[n][k]["mean"] for n in names.values()
                                                             if out[n][k] is not None]) else None)
                              for k in REPORTED}
    return out


def evaluate(settings: dict[str, Any], input_dir: Path, gt_dir: Path, output_dir: Path) -> dict[str, Any]:
    """Score every job of ``predictions.json``; writes and returns ``metrics.json``."""
    path = input_dir / "predictions.json"
    if not path.is_file():
        raise SegkitError("predictions.json not found", path)
    try:
        jobs = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SegkitError(f"predictions.json is not valid JSON ({exc})", path) from None
    targets = {target_key(target_values(v)): (k, target_values(v)) for k, v in settings["labels"].items()
               if k.lower() != "ignore" and target_values(v) != (0,)}
    names = {key: name for key, (name, _) in targets.items()}
    ignore = next((int(v) for k, v in settings["labels"].items() if k.lower() == "ignore"), None)
    output = settings["output"]
    per_case: dict[str, dict[str, Any]] = {}
    for job in jobs:
        case, pred, ref = job_files(job, input_dir, gt_dir, output["slug"], output["relative_path"],
                                    settings.get("ground_truth_socket"))
        if case in per_case:
            raise SegkitError(f"two algorithm jobs map to ground-truth case {case!r}", path)
        per_case[case] = score_case(pred, ref, [values for _, values in targets.values()],
                                    float(settings.get("tolerance_mm", 1.0)), ignore)
    if not per_case:
        raise SegkitError("predictions.json lists no jobs", path)
    metrics = {"case": per_case, "aggregates": aggregate(per_case, names)}
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "metrics.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="segkit-evaluation", description=__doc__.split("\n")[0])
    p.add_argument("--settings", type=Path, default=SETTINGS)
    p.add_argument("--input", type=Path, default=Path("/input"))
    p.add_argument("--ground-truth", type=Path, default=GROUND_TRUTH)
    p.add_argument("--output", type=Path, default=Path("/output"))
    args = p.parse_args(argv)
    try:
        metrics = evaluate(json.loads(args.settings.read_text(encoding="utf-8")), args.input, args.ground_truth, args.output)
    except SegkitError as exc:
        print(f"segkit: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # noqa: BLE001
        print(f"segkit: internal error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(metrics["aggregates"]["foreground_mean"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
