"""The two-step largest-component postprocessing rule (docs/method.md 1.4), decided on CV predictions.

(a) Keep only the largest connected component of the union of all foreground classes. Accepted if
    the foreground mean Dice improves and no class' mean Dice gets worse.
(b) Then, for each class in label order, keep only that class' largest component, on top of (a)'s
    result if (a) was accepted. Accepted if that class' mean Dice improves. Skipped with a single
    foreground class, where it is the same operation as (a) (as in nnU-Net v2).

"Improves" is strict: a change that leaves the Dice equal is not applied. Class means follow the
empty-both rule of ``toolkit.evaluation``. Each case is read once: every variant is computed from
the same arrays. This is exact because removing class k's voxels never changes another class'
mask, so the per-class decisions of (b) are independent of each other.

Region datasets (nnU-Net v2's ``determine_postprocessing`` with ``foreground_regions``): (a) is the
same operation on the union of every foreground label value, judged on the regions' Dice; (b) runs
per region in ``dataset.json`` order, a region's mask being "label is one of its values" and removed
voxels set to background. Regions overlap, so removing one region's voxels changes the others': each
region's step is evaluated on top of the steps accepted before it (one pass over the cases per
region) and accepted when that region's mean Dice improves, as there.

A decision is plain JSON: ``{"keep_largest_foreground": bool, "foreground_labels": [..],
"keep_largest_per_class": [..]}`` where a per-class entry is a label value or, for a region of several
values, the list of its values; :func:`apply_postprocessing` applies it at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.dataset.labels import LabelSpec, target_key, target_values
from toolkit.evaluation.metrics import dice_per_class
from toolkit.evaluation.parallel import parallel_map
from toolkit.io.images import read_image
from toolkit.postprocessing.components import keep_largest

NO_POSTPROCESSING = {"keep_largest_foreground": False, "foreground_labels": [], "keep_largest_per_class": []}


def apply_postprocessing(seg: np.ndarray, decision: dict) -> np.ndarray:
    """Apply a decision to a label map (a new array; the input is untouched)."""
    out = seg
    if decision.get("keep_largest_foreground"):
        out = keep_largest(out, [int(v) for v in decision["foreground_labels"]])
    for label in decision.get("keep_largest_per_class", []):
        out = keep_largest(out, list(target_values(label)))
    return out if out is not seg else seg.copy()


def case_variants(task: tuple) -> dict:
    """Per-class Dice of one case without postprocessing and under every candidate operation.

    ``task`` = (case, prediction path, reference path, labels, ignore label). Returns
    ``{"base", "union", "class_from_base", "class_from_union"}``, each ``{label: Dice | None}``.
    """
    case, pred_path, ref_path, labels, ignore = task
    pred, _ = read_image(pred_path)
    ref, _ = read_image(ref_path)
    union = keep_largest(pred, labels)
    out = {"case": case,
           "base": dice_per_class(pred, ref, labels, ignore),
           "union": dice_per_class(union, ref, labels, ignore)}
    for name, source in (("class_from_base", pred), ("class_from_union", union)):
        if name == "class_from_union" and np.array_equal(union, pred):
            out[name] = out["class_from_base"]
            continue
        out[name] = {lb: dice_per_class(keep_largest(source, [lb]), ref, [lb], ignore)[lb] for lb in labels}
    return out


def _class_means(variants: Sequence[dict], key: str, labels: Sequence[int]) -> dict[int, float | None]:
    means = {}
    for lb in labels:
        vals = [v[key][lb] for v in variants if v[key][lb] is not None]
        means[lb] = sum(vals) / len(vals) if vals else None
    return means


def _fg_mean(means: dict[int, float | None]) -> float | None:
    vals = [m for m in means.values() if m is not None]
    return sum(vals) / len(vals) if vals else None


def _better(after: float | None, before: float | None) -> bool:
    """Strict improvement; a class whose every case became empty-both counts as improved."""
    if before is None:
        return False
    return after is None or after > before


def _worse(after: float | None, before: float | None) -> bool:
    return before is not None and after is not None and after < before


def _json_means(means: dict) -> dict[str, float | None]:
    return {target_key(k): v for k, v in means.items()}


def choose_postprocessing(variants: Sequence[dict], labels: Sequence[int]) -> tuple[dict, list[dict]]:
    """The decision and a per-step report (before/after Dice per class), from :func:`case_variants` rows."""
    labels = [int(lb) for lb in labels]
    base, union = _class_means(variants, "base", labels), _class_means(variants, "union", labels)
    accept_a = _better(_fg_mean(union), _fg_mean(base)) and not any(_worse(union[lb], base[lb]) for lb in labels)
    steps = [{"step": "largest_component_of_all_foreground", "labels": labels, "accepted": accept_a,
              "dice_before": _json_means(base), "dice_after": _json_means(union),
              "foreground_mean_before": _fg_mean(base), "foreground_mean_after": _fg_mean(union)}]
    current = dict(union if accept_a else base)
    per_class: list[int] = []
    if len(labels) > 1:
        candidates = _class_means(variants, "class_from_union" if accept_a else "class_from_base", labels)
        for lb in labels:
            after = {**current, lb: candidates[lb]}
            accepted = _better(candidates[lb], current[lb])
            steps.append({"step": "largest_component_per_class", "labels": [lb], "accepted": accepted,
                          "dice_before": _json_means(current), "dice_after": _json_means(after),
                          "foreground_mean_before": _fg_mean(current), "foreground_mean_after": _fg_mean(after)})
            if accepted:
                per_class.append(lb)
                current = after
    decision = {"keep_largest_foreground": accept_a, "foreground_labels": labels if accept_a else [],
                "keep_largest_per_class": per_class}
    return decision, steps


def region_step(task: tuple) -> dict:
    """Region Dice of one case after the ``applied`` operations, and after ``candidate`` on top of them.

    ``task`` = (case, prediction path, reference path, regions, ignore label, applied, candidate); an
    operation is the tuple of label values whose union keeps only its largest component.
    """
    case, pred_path, ref_path, regions, ignore, applied, candidate = task
    pred, _ = read_image(pred_path)
    ref, _ = read_image(ref_path)
    for values in applied:
        pred = keep_largest(pred, list(values))
    after = keep_largest(pred, list(candidate))
    return {"case": case, "before": dice_per_class(pred, ref, regions, ignore),
            "after": dice_per_class(after, ref, regions, ignore)}


def _entry(values: tuple[int, ...]) -> int | list[int]:
    return values[0] if len(values) == 1 else list(values)


def _region_round(cases: Sequence[tuple[str, Path, Path]], spec: LabelSpec, applied: list, candidate: tuple,
                  workers: int) -> tuple[dict, dict]:
    regions = list(spec.regions)
    tasks = [(c, Path(p), Path(r), regions, spec.ignore, list(applied), candidate) for c, p, r in cases]
    rows = parallel_map(region_step, tasks, workers, "postprocessing")
    return _class_means(rows, "before", regions), _class_means(rows, "after", regions)


def _step(name: str, targets: list, accepted: bool, before: dict, after: dict) -> dict:
    return {"step": name, "labels": [_entry(t) for t in targets], "accepted": accepted,
            "dice_before": _json_means(before), "dice_after": _json_means(after),
            "foreground_mean_before": _fg_mean(before), "foreground_mean_after": _fg_mean(after)}


def choose_region_postprocessing(cases: Sequence[tuple[str, Path, Path]], spec: LabelSpec,
                                 workers: int = 1) -> tuple[dict, list[dict]]:
    """The decision and per-step report for a region dataset (module docstring), region by region."""
    regions, union = list(spec.regions), tuple(spec.foreground_labels)
    base, after = _region_round(cases, spec, [], union, workers)
    accept_a = _better(_fg_mean(after), _fg_mean(base)) and not any(_worse(after[r], base[r]) for r in regions)
    steps = [_step("largest_component_of_all_foreground", [(v,) for v in union], accept_a, base, after)]
    applied: list[tuple[int, ...]] = [union] if accept_a else []
    per_region: list = []
    for region in regions if len(regions) > 1 else []:
        before, after = _region_round(cases, spec, applied, region, workers)
        accepted = _better(after[region], before[region])
        steps.append(_step("largest_component_per_class", [region], accepted, before, after))
        if accepted:
            applied.append(region)
            per_region.append(_entry(region))
    decision = {"keep_largest_foreground": accept_a, "foreground_labels": list(union) if accept_a else [],
                "keep_largest_per_class": per_region}
    return decision, steps


def decide_postprocessing(cases: Sequence[tuple[str, Path, Path]], labels: Sequence[int] | LabelSpec,
                          ignore: int | None = None, workers: int = 1) -> dict:
    """Decide postprocessing on (case, prediction, reference) triples (normally all CV predictions).

    ``labels``: the foreground label values, or the dataset's label model (regions decided per
    region, its ignore value used). Returns ``{"decision": {...}, "steps": [...], "dice_before": {...},
    "dice_after": {...}, "foreground_mean_before": x, "foreground_mean_after": y, "num_cases": n}``.
    """
    if isinstance(labels, LabelSpec) and labels.has_regions:
        decision, steps = choose_region_postprocessing(cases, labels, workers)
    else:
        if isinstance(labels, LabelSpec):
            labels, ignore = [v for (v,) in labels.regions], labels.ignore
        labels = [int(lb) for lb in labels]
        tasks = [(c, Path(p), Path(r), labels, ignore) for c, p, r in cases]
        variants = parallel_map(case_variants, tasks, workers, "postprocessing")
        decision, steps = choose_postprocessing(variants, labels)
    accepted = [s for s in steps if s["accepted"]]
    last = accepted[-1] if accepted else None
    after = last["dice_after"] if last else steps[0]["dice_before"]
    after_fg = last["foreground_mean_after"] if last else steps[0]["foreground_mean_before"]
    return {"decision": decision, "steps": steps, "num_cases": len(cases),
            "dice_before": steps[0]["dice_before"], "dice_after": after,
            "foreground_mean_before": steps[0]["foreground_mean_before"], "foreground_mean_after": after_fg}
