"""Model selection from cross-validation (docs/method.md 1.4), written to ``<WORK>/<dataset>/selection.json``.

1. Each configuration's validation predictions of all present folds are gathered into ``cv/<config>/``
   and evaluated together (``summary.json``).
2. Every pair of configurations is ensembled from the saved probabilities into ``ensembles/<a>+<b>/``
   and evaluated.
3. Score = mean foreground Dice (mean over classes, or over regions for a region dataset, of the
   per-case Dice, empty-both cases excluded; ignored voxels never count).
   The best score wins; a tie (within 1e-12) goes to the simpler candidate: a single configuration
   before an ensemble, and 2d < 3d_fullres < 3d_lowres < 3d_cascade_fullres.
   When folds are missing, candidates may cover different cases; they are then ranked on the cases
   all of them predicted (each one's score on all its own cases is kept beside), and this is said.
4. The two-step largest-component postprocessing is decided on the winner's CV predictions (per class,
   or per region for a region dataset, toolkit.postprocessing.rules).

Summaries are reused when the files they were computed from are unchanged, so re-running after a
new fold finished only redoes what that fold touches.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from toolkit.dataset.folds import NO_VALIDATION
from toolkit.dataset.labels import target_key
from toolkit.errors import SegkitError
from toolkit.evaluation.evaluate import evaluate_spec_cases, evaluation_spec
from toolkit.evaluation.summary import restrict
from toolkit.io.atomic import atomic_write_json, read_json
from toolkit.postprocessing.rules import decide_postprocessing
from toolkit.selection.ensemble import build_ensemble
from toolkit.selection.gather import ConfigCV, config_rank, discover, gather_cv, stamp
from toolkit.workdir import WorkDir

TIE_TOLERANCE = 1e-12


def simplicity(configurations: list[str]) -> tuple:
    """Sort key: fewer members first, then simpler members."""
    return (len(configurations), sorted(config_rank(c) for c in configurations))


def choose_best(candidates: list[dict]) -> dict:
    """The candidate with the highest ``score``; ties (within 1e-12) go to the simplest one."""
    best = None
    for cand in sorted(candidates, key=lambda c: simplicity(c["configurations"])):
        score = cand["score"] if cand["score"] is not None else float("-inf")
        if best is None or score > best[0] + TIE_TOLERANCE:
            best = (score, cand)
    if best is None:
        raise ValueError("no candidates")
    return best[1]


def _evaluate_cached(folder: Path, preds: dict[str, Path], sources: list[Path], refs: dict[str, Path],
                     ds: dict, workers: int, tolerance_mm: float | None) -> dict:
    """Evaluate (or reuse) ``folder/summary.json``; ``tolerance_mm`` None = overlap metrics only."""
    missing = sorted(set(preds) - set(refs))
    if missing:
        raise SegkitError(f"validation case(s) without a reference label: {', '.join(missing[:5])}", folder)
    digest = stamp(sources)
    path = folder / "summary.json"
    if path.is_file():
        old = read_json(path)
        same_cases = sorted(c["case"] for c in old["per_case"]) == sorted(preds)
        if old.get("source_stamp") == digest and same_cases and old.get("tolerance_mm") == tolerance_mm:
            return old
    summary = evaluate_spec_cases([(c, preds[c], refs[c]) for c in sorted(preds)], evaluation_spec(ds),
                                  tolerance_mm=tolerance_mm or 0.0, workers=workers,
                                  surface_metrics=tolerance_mm is not None, desc=f"evaluate {folder.name}")
    summary["source_stamp"] = digest
    atomic_write_json(path, summary)
    return summary


def _candidate(name: str, configs: list[str], folder: Path, summary: dict, work: WorkDir) -> dict:
    return {"name": name, "configurations": configs, "ensemble": len(configs) > 1,
            "folder": str(folder.relative_to(work.root)), "summary": summary,
            "num_cases": len(summary["per_case"]), "score_all_cases": summary["foreground_mean"]["Dice"]}


def _warn(warnings: list[str], message: str) -> None:
    warnings.append(message)
    print(f"segkit: warning: {message}", file=sys.stderr)


def _fold_all_warnings(work: WorkDir, warnings: list[str]) -> None:
    """fold_all models exist but are never candidates (no held-out cases): say so."""
    for fold_dir in sorted((work.root / "models").glob("*/fold_all")):
        _warn(warnings, f"{fold_dir.parent.name}: fold_all ignored ({NO_VALIDATION}); export it with "
                        f"`segkit export ... -c {fold_dir.parent.name} --folds all`")


def _fold_warnings(cvs: list[ConfigCV], warnings: list[str]) -> None:
    for cv in cvs:
        if not cv.folds_present:
            _warn(warnings, f"{cv.name}: no finished fold (missing {cv.folds_missing}); not a candidate")
        elif cv.folds_missing:
            _warn(warnings, f"{cv.name}: fold(s) {cv.folds_missing} missing; using fold(s) {cv.folds_present}")
        lacking = cv.folds_json()["cases_without_probabilities"]
        if cv.folds_present and lacking:
            _warn(warnings, f"{cv.name}: {len(lacking)} case(s) have no saved probabilities and cannot be ensembled")


def _build_candidates(work: WorkDir, cvs: list[ConfigCV], refs: dict[str, Path], ds: dict,
                      workers: int, tolerance_mm: float | None) -> list[dict]:
    candidates = []
    for cv in cvs:
        preds = gather_cv(cv, work.cv(cv.name), ds["file_ending"])
        summary = _evaluate_cached(work.cv(cv.name), preds, list(cv.predictions.values()), refs, ds, workers,
                                   tolerance_mm)
        candidates.append(_candidate(cv.name, [cv.name], work.cv(cv.name), summary, work))
    for a, b in itertools.combinations(cvs, 2):
        if set(a.probabilities) & set(b.probabilities):
            candidates.append(_ensemble_candidate(work, a, b, refs, ds, workers, tolerance_mm))
    return candidates


def _ensemble_candidate(work: WorkDir, a: ConfigCV, b: ConfigCV, refs: dict[str, Path], ds: dict,
                        workers: int, tolerance_mm: float | None) -> dict:
    """Build (unless its sources are unchanged and its files present) and evaluate the ensemble a+b."""
    ending = ds["file_ending"]
    folder = work.ensemble(a.name, b.name)
    cases = sorted(set(a.probabilities) & set(b.probabilities))
    sources = [cv.probabilities[c] for cv in (a, b) for c in cases]
    preds = {c: folder / f"{c}{ending}" for c in cases}
    cached = folder / "summary.json"
    up_to_date = (cached.is_file() and read_json(cached).get("source_stamp") == stamp(sources)
                  and all(p.is_file() for p in preds.values()))
    if not up_to_date:
        preds = build_ensemble([a.probabilities, b.probabilities], a.predictions, folder, ending,
                               evaluation_spec(ds), workers)
    summary = _evaluate_cached(folder, preds, sources, refs, ds, workers, tolerance_mm)
    return _candidate(folder.name, [a.name, b.name], folder, summary, work)


def _score(candidates: list[dict], labels: list, warnings: list[str]) -> list[str]:
    """Set each candidate's ranking ``score``; returns the cases it was computed on."""
    case_sets = [{c["case"] for c in cand["summary"]["per_case"]} for cand in candidates]
    common = set.intersection(*case_sets)
    if any(s != common for s in case_sets):
        _warn(warnings, f"candidates cover different cases (missing folds); ranked on the {len(common)} "
                        "case(s) all of them predicted")
    for cand in candidates:
        sub = restrict(cand["summary"], common, labels) if common else cand["summary"]
        cand["score"] = sub["foreground_mean"]["Dice"]
        cand["dice_per_class"] = {k: v["Dice"] for k, v in sub["mean"].items()}
    return sorted(common)


def select(work: WorkDir, references: dict[str, Path], dataset_json: dict, workers: int = 1,
           tolerance_mm: float | None = None, num_folds: int | None = None) -> dict:
    """Run model selection in ``work``; ``references`` maps case id -> reference label file.

    The score needs only Dice, so by default the summaries hold overlap metrics (Dice, IoU, counts,
    volumes) only; surface distances on large CT volumes cost seconds per case and candidate. Pass
    ``tolerance_mm`` to add HD95 and NSD at that tolerance to every summary.

    Returns (and writes to ``selection.json``) every candidate's score, the winner, the fold
    coverage and the postprocessing decision with before/after Dice per class.
    """
    if num_folds is None:
        num_folds = len(read_json(work.splits)) if work.splits.is_file() else 5
    warnings: list[str] = []
    cvs = discover(work, dataset_json["file_ending"], num_folds)
    _fold_all_warnings(work, warnings)
    _fold_warnings(cvs, warnings)
    usable = [cv for cv in cvs if cv.predictions]
    if not usable:
        only_all = any((work.root / "models").glob("*/fold_all"))
        raise SegkitError("no finished validation fold of any configuration; train first" +
                          (f" (fold all is no candidate: {NO_VALIDATION})" if only_all else ""), work.root / "models")
    spec = evaluation_spec(dataset_json)
    labels = list(spec.regions)
    candidates = _build_candidates(work, usable, references, dataset_json, workers, tolerance_mm)
    common = _score(candidates, labels, warnings)
    winner = choose_best(candidates)
    folder = work.root / winner["folder"]
    cases = [(c["case"], Path(c["prediction_file"]), Path(c["reference_file"]))
             for c in winner["summary"]["per_case"]]
    pp = decide_postprocessing(cases, spec, workers=workers)
    result = {
        "dataset": work.root.name,
        "metric": f"mean over foreground {'regions' if spec.has_regions else 'classes'} of the mean per-case "
                  "Dice (empty-both cases excluded)",
        "num_folds": num_folds,
        "folds": {cv.name: cv.folds_json() for cv in cvs},
        "complete": all(not cv.folds_missing for cv in cvs),
        "compared_on_cases": len(common),
        "candidates": [{k: v for k, v in c.items() if k != "summary"} for c in candidates],
        "winner": {"name": winner["name"], "configurations": winner["configurations"],
                   "score": winner["score"], "folder": str(folder.relative_to(work.root)),
                   "folds": {c: next(cv.folds_present for cv in cvs if cv.name == c)
                             for c in winner["configurations"]}},
        "postprocessing": pp,
        "warnings": warnings,
    }
    atomic_write_json(work.selection, result)
    return result


def select_for_dataset(dataset: str | Path, work: str | Path | None = None, workers: int = 1,
                       tolerance_mm: float | None = None) -> dict:
    """:func:`select` for a canonical dataset folder: references are its training labels."""
    from toolkit.dataset import discover_cases, load_dataset

    spec = load_dataset(dataset)
    wd = WorkDir.for_dataset(work, dataset)
    if not wd.root.is_dir():
        raise SegkitError("work directory for this dataset not found; run training first", wd.root)
    refs = {c.id: c.label for c in discover_cases(spec, "Tr") if c.label is not None}
    return select(wd, refs, spec.raw, workers, tolerance_mm)


def format_selection(result: dict) -> str:
    """Candidates by score (winner marked), then the postprocessing decisions, as plain text."""
    lines = [f"{'candidate':40s} {'cases':>5s} {'score':>8s}"]
    for c in sorted(result["candidates"], key=lambda c: -(c["score"] if c["score"] is not None else -1)):
        mark = "  <- selected" if c["name"] == result["winner"]["name"] else ""
        score = "-" if c["score"] is None else f"{c['score']:.4f}"
        lines.append(f"{c['name']:40s} {c['num_cases']:>5d} {score:>8s}{mark}")
    lines.append("postprocessing (largest connected component):")
    for step in result["postprocessing"]["steps"]:
        what = "all foreground" if step["step"].endswith("foreground") else f"class {target_key(step['labels'][0])}"
        before = ", ".join(f"{k}: {_f(v)}" for k, v in step["dice_before"].items())
        after = ", ".join(f"{k}: {_f(v)}" for k, v in step["dice_after"].items())
        lines.append(f"  {what:16s} {'accepted' if step['accepted'] else 'rejected':8s} "
                     f"Dice before [{before}] after [{after}]")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"
