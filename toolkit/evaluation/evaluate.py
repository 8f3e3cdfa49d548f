"""Evaluating a folder of predicted label files against reference label files.

Every prediction ``<case><file_ending>`` in the prediction folder is compared with the reference of
the same name; references without a prediction are listed (and reported on stderr) but not scored,
like nnU-Net v2's ``compute_metrics_on_folder``. A prediction must have the reference's shape and
geometry: a misplaced prediction is an error, not a bad score. Cases run in parallel processes.

Targets come from ``dataset.json`` through :class:`toolkit.dataset.labels.LabelSpec`: every
foreground label of a plain dataset, or every foreground region of a region dataset (a voxel is in
a region when its label is one of the region's values, as nnU-Net v2 evaluates regions); an
``ignore`` label in the reference masks those voxels out of every metric. Keys are
:func:`toolkit.dataset.labels.target_key` strings
(docs/interfaces.md "Region labels and the ignore label").
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from toolkit.dataset.labels import LabelSpec, dataset_label_spec
from toolkit.errors import SegkitError
from toolkit.evaluation.metrics import Target, case_metrics
from toolkit.evaluation.parallel import parallel_map
from toolkit.evaluation.summary import summarize
from toolkit.io.atomic import atomic_write_json, read_json
from toolkit.io.images import read_image

DEFAULT_TOLERANCE_MM = 1.0


def evaluation_spec(dataset_json: dict) -> LabelSpec:
    """The label model to evaluate with; a dataset without any foreground target is an error."""
    spec = dataset_label_spec(dataset_json, Path("dataset.json"))
    if not spec.foreground_targets():
        raise SegkitError("dataset.json declares no foreground label")
    return spec


def evaluate_spec_cases(cases: Sequence[tuple[str, Path, Path]], spec: LabelSpec, **kwargs) -> dict:
    """:func:`evaluate_cases` over every foreground target of ``spec``, its ignore value and names."""
    summary = evaluate_cases(cases, list(spec.regions), ignore=spec.ignore, **kwargs)
    summary["labels"] = spec.names_by_key()
    return summary


def evaluate_case(task: tuple) -> dict:
    """Metrics of one case; ``task`` = (case, pred_path, ref_path, labels, tolerance_mm, ignore, surface)."""
    case, pred_path, ref_path, labels, tolerance_mm, ignore, surface_metrics = task
    pred, pred_geo = read_image(pred_path)
    ref, ref_geo = read_image(ref_path)
    if pred.shape != ref.shape:
        raise SegkitError(f"prediction shape {pred.shape} differs from the reference's {ref.shape}", pred_path)
    diff = pred_geo.differs_from(ref_geo)
    if diff:
        raise SegkitError(f"prediction geometry differs from the reference: {diff}", pred_path)
    metrics = case_metrics(pred, ref, labels, ref_geo.spacing, tolerance_mm, ignore, surface_metrics)
    return {"case": case, "prediction_file": str(pred_path), "reference_file": str(ref_path), "metrics": metrics}


def evaluate_cases(cases: Sequence[tuple[str, Path, Path]], labels: Sequence[Target],
                   tolerance_mm: float = DEFAULT_TOLERANCE_MM, ignore: int | None = None, workers: int = 1,
                   surface_metrics: bool = True, desc: str | None = "evaluate") -> dict:
    """Evaluate (case id, prediction path, reference path) triples for label values or regions
    (tuples of values); returns the summary dict."""
    labels = [lb if isinstance(lb, int) else tuple(int(v) for v in lb) for lb in labels]
    tasks = [(c, Path(p), Path(r), labels, tolerance_mm, ignore, surface_metrics) for c, p, r in cases]
    per_case = parallel_map(evaluate_case, tasks, workers, desc)
    summary = {"per_case": per_case, **summarize(per_case, labels)}
    summary["tolerance_mm"] = tolerance_mm if surface_metrics else None
    return summary


def list_label_files(folder: Path, file_ending: str) -> dict[str, Path]:
    """Case id -> file for every ``<case><file_ending>`` in ``folder`` (hidden files skipped)."""
    if not folder.is_dir():
        raise SegkitError("folder not found", folder)
    return {p.name[: -len(file_ending)]: p for p in sorted(folder.iterdir())
            if p.name.endswith(file_ending) and not p.name.startswith(".") and p.is_file()}


def evaluate_folder(pred_dir: str | Path, ref_dir: str | Path, dataset_json: dict | str | Path,
                    tolerance_mm: float = DEFAULT_TOLERANCE_MM, workers: int = 1,
                    output: str | Path | None = None, surface_metrics: bool = True) -> dict:
    """Evaluate every prediction in ``pred_dir`` against ``ref_dir``; optionally write the JSON summary.

    Returns ``{"per_case": [...], "mean": {"<label>": {...}}, "foreground_mean": {...}, "labels": ...,
    "tolerance_mm": ..., "missing_predictions": [...]}``.
    """
    if not isinstance(dataset_json, dict):
        dataset_json = read_json(dataset_json)
    if tolerance_mm < 0:
        raise SegkitError(f"tolerance must be >= 0 mm, got {tolerance_mm}")
    ending = dataset_json.get("file_ending")
    if not isinstance(ending, str):
        raise SegkitError("dataset.json has no 'file_ending'")
    spec = evaluation_spec(dataset_json)
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    preds, refs = list_label_files(pred_dir, ending), list_label_files(ref_dir, ending)
    if not preds:
        raise SegkitError(f"no prediction files ending in {ending}", pred_dir)
    orphans = sorted(set(preds) - set(refs))
    if orphans:
        raise SegkitError(f"no reference for prediction(s) {', '.join(orphans[:5])}", ref_dir)
    missing = sorted(set(refs) - set(preds))
    if missing:
        print(f"segkit: warning: {len(missing)} reference case(s) have no prediction and are not scored: "
              f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}", file=sys.stderr)
    cases = [(c, preds[c], refs[c]) for c in sorted(preds)]
    summary = evaluate_spec_cases(cases, spec, tolerance_mm=tolerance_mm, workers=workers,
                                  surface_metrics=surface_metrics)
    summary["missing_predictions"] = missing
    if output is not None:
        atomic_write_json(output, summary)
    return summary
