"""``segkit run``: fingerprint -> plan -> preprocess -> train every configuration x fold -> select.

Every stage skips what is finished (a fold with ``checkpoint_final.pt`` and its validation summary),
and a fold with only ``checkpoint_latest.pt`` resumes from it, so a killed run continues where it
stopped. ``-c``/``-f`` restrict the work; selection then uses whatever exists and says so.

The paper's shortcuts for limited compute are options, not code paths of their own: train only
3d_fullres (``-c 3d_fullres``), one fold per configuration (``-f 0``). A dataset.json may carry a
``segkit_training`` recipe (the CREMI adapter writes one: ``{"configurations": ["3d_fullres"],
"models_on_all_data": 5}``); it restricts the configurations and gives each fold its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.dataset import DatasetSpec, load_dataset
from toolkit.dataset.folds import ALL, NO_VALIDATION, is_all, numbered, parse_folds
from toolkit.errors import SegkitError
from toolkit.pipeline.stages import (
    ensure_fingerprint,
    ensure_plans,
    ensure_preprocessed,
    ensure_splits,
    log,
    planned_configs,
    reference_labels,
)
from toolkit.pipeline.state import JobState, fold_finished, train_key
from toolkit.workdir import WorkDir


@dataclass
class RunOptions:
    configs: list[str] = field(default_factory=list)  # empty: every planned configuration
    folds: list[int | str] = field(default_factory=list)  # empty: every fold of the splits; "all": fold all
    epochs: int | None = None
    iters_per_epoch: int | None = None
    val_iters: int | None = None
    num_workers: int | None = None
    device: str | None = None
    seed: int | None = None
    jobs: int = 1
    gpu_memory_gb: float | None = None  # None: the preset's GPU-memory target
    select: bool = True
    num_gpus: int = 1  # data-parallel ranks per fold (toolkit.training.distributed)
    precision: str | None = None  # None: TrainerOptions' (auto); see toolkit.precision
    augmentation: Any = None  # AugmentationSettings; None: the defaults (an interrupted fold keeps its own)
    preset: str | None = None  # planner preset (toolkit/planning/presets.yaml); None: default / existing plans
    pretrained_weights: str | None = None  # fine-tuning start of every fold that starts from scratch
    pretrained_sha256: str | None = None
    augment_on: str | None = None  # device | workers; None: device on CUDA, workers otherwise


def _recipe(spec: DatasetSpec) -> dict[str, Any]:
    recipe = spec.raw.get("segkit_training") or {}
    if not isinstance(recipe, dict):
        raise SegkitError("'segkit_training' must be an object", spec.root / "dataset.json")
    return recipe


def _choose_configs(plans: dict[str, Any], opts: RunOptions, recipe: dict[str, Any]) -> list[str]:
    planned = planned_configs(plans)
    wanted = opts.configs or recipe.get("configurations") or planned
    unknown = [c for c in wanted if c not in planned]
    if unknown:
        raise SegkitError(f"configuration(s) {', '.join(unknown)} not in the plans (planned: {', '.join(planned)})")
    wanted = list(wanted)
    for c in list(wanted):  # a cascade needs its previous stage trained on the same folds
        prev = plans["configurations"][c].get("previous_stage")
        if prev and prev not in wanted:
            log(f"[run] {c} needs {prev} trained on the same folds: training it too")
            wanted.append(prev)
    return [c for c in planned if c in wanted]


def _trainer_options(opts: RunOptions, fold: int | str, recipe: dict[str, Any]):
    from toolkit.training.options import TrainerOptions

    seed = opts.seed
    if seed is None and recipe.get("models_on_all_data") and not is_all(fold):
        seed = TrainerOptions().seed + fold  # models on the same data differ by their seed
    return TrainerOptions().with_changes(epochs=opts.epochs, iters_per_epoch=opts.iters_per_epoch,
                                         val_iters=opts.val_iters, num_workers=opts.num_workers,
                                         device=opts.device, seed=seed, world_size=opts.num_gpus,
                                         precision=opts.precision, augmentation=opts.augmentation,
                                         pretrained_weights=opts.pretrained_weights,
                                         pretrained_sha256=opts.pretrained_sha256, augment_on=opts.augment_on)


def train_fold(spec: DatasetSpec, work: Path | None, config: str, fold: int | str, opts: RunOptions,
               recipe: dict[str, Any]) -> str:
    """Train (or resume, or finish the validation of) one fold; returns what was done."""
    from toolkit.inference.validation import predict_validation
    from toolkit.training.distributed import launch_training
    from toolkit.training.setup import resolve_training
    from toolkit.training.trainer import stored_options

    setup = resolve_training(spec.root, work, config, fold)
    fold_dir = setup.fold_dir
    if fold_finished(fold_dir):
        return "done before"
    if setup.held_out and (fold_dir / "checkpoint_final.pt").is_file():
        log(f"[train] {config} fold {fold}: trained; predicting its validation cases")
        predict_validation(fold_dir, spec.root, device=opts.device)
        return "validated"
    if setup.cascade_folder is not None:
        _materialize_cascade(setup)
    resume = (fold_dir / "checkpoint_latest.pt").is_file()
    options = _trainer_options(opts, fold, recipe)
    if resume:  # the interrupted run's options; the rank count may change (batches are global)
        options = stored_options(fold_dir).with_changes(world_size=opts.num_gpus)
    log(f"[train] {config} fold {fold}: {'resuming' if resume else 'starting'} ({options.epochs} epochs x "
        f"{options.iters_per_epoch} iterations)")
    launch_training(setup, options.with_changes(final_validation=False), resume=resume)
    if setup.held_out:
        predict_validation(fold_dir, spec.root, device=opts.device)
    else:
        log(f"[train] {config} fold all: {NO_VALIDATION}")
    return "resumed" if resume else "trained"


def _materialize_cascade(setup) -> None:
    """The low-res stage's predictions of every training case, in the full-res grid (cascade input)."""
    from toolkit.preprocessing.storage import load_case
    from toolkit.training.cascade import materialize_previous_stage

    prev = setup.plan["previous_stage"]
    shapes = {c: tuple(load_case(setup.preprocessed, c)[0].shape[1:]) for c in setup.train_cases + setup.val_cases}
    materialize_previous_stage(setup.cascade_folder, setup.work.root / "models" / prev, shapes)


@dataclass
class Prepared:
    """Everything before training, done: what to train."""

    configs: list[str]
    folds: list[int | str]
    num_splits: int
    planned: list[str]

    @property
    def selects(self) -> bool:
        """Whether selection has anything to work on: a cross-validation fold (fold all has none)."""
        return bool(numbered(self.folds))


def prepare_run(dataset: str | Path, work: str | Path | None, opts: RunOptions) -> Prepared:
    """Verify, fingerprint, plan, preprocess and split (each skipped when done)."""
    from toolkit.dataset.verify import check_dataset

    spec = load_dataset(dataset)
    report = check_dataset(spec.root, workers=opts.jobs)
    if not report.ok:
        raise SegkitError(f"dataset has {len(report.problems)} problem(s), first: {report.problems[0]} "
                          "(run `segkit verify` for all)", spec.root)
    wd = WorkDir.for_dataset(work, spec.root)
    fingerprint = ensure_fingerprint(spec, wd, opts.jobs)
    plans = ensure_plans(spec, wd, fingerprint, opts.gpu_memory_gb, opts.preset)
    configs = _choose_configs(plans, opts, _recipe(spec))
    ensure_preprocessed(spec, wd, plans, configs, opts.jobs)
    folds = parse_folds(opts.folds)
    if folds and not numbered(folds):  # fold all alone needs no splits (too few cases for them is fine)
        return Prepared(configs, folds, 0, planned_configs(plans))
    splits = ensure_splits(spec, wd)
    folds = folds or list(range(len(splits)))
    bad = [f for f in numbered(folds) if not 0 <= f < len(splits)]
    if bad:
        raise SegkitError(f"fold(s) {bad} do not exist (the splits have folds 0..{len(splits) - 1}, or 'all')",
                          wd.splits)
    return Prepared(configs, folds, len(splits), planned_configs(plans))


def run_training(dataset: str | Path, work: str | Path | None, config: str, fold: int | str,
                 opts: RunOptions) -> str:
    """One (configuration, fold): the unit of work a cluster job runs."""
    spec = load_dataset(dataset)
    return train_fold(spec, work, config, fold, opts, _recipe(spec))


def select_models(dataset: str | Path, work: str | Path | None, opts: RunOptions, prep: Prepared) -> dict[str, Any]:
    """Model selection over whatever was trained (says so when that is not everything)."""
    from toolkit.selection.select import select

    spec = load_dataset(dataset)
    wd = WorkDir.for_dataset(work, spec.root)
    if ALL in prep.folds:
        log(f"[select] fold_all models are not candidates: {NO_VALIDATION}")
    if len(numbered(prep.folds)) < prep.num_splits or set(prep.configs) != set(prep.planned):
        log(f"[select] with what exists: configurations {', '.join(prep.configs)}, folds {prep.folds}")
    return select(wd, reference_labels(spec), spec.raw, workers=opts.jobs)


def run_pipeline(dataset: str | Path, work: str | Path | None, opts: RunOptions) -> dict[str, Any]:
    """Run everything that is not finished yet, in this process; returns a summary (per fold status,
    selection). Each fold's progress goes to the work directory's jobs.json (``segkit status``)."""
    prep = prepare_run(dataset, work, opts)
    wd = WorkDir.for_dataset(work, dataset)
    state = JobState(wd)
    state.executor = "local"
    status: dict[str, dict[int | str, str]] = {}
    for config in prep.configs:
        status[config] = {}
        for f in prep.folds:
            key = train_key(config, f)
            state.set(key, "running", job_id=None, attempts=state.get(key).get("attempts", 0) + 1)
            try:
                status[config][f] = run_training(dataset, work, config, f, opts)
            except BaseException as exc:
                state.set(key, "failed" if isinstance(exc, Exception) else "waiting", error=_one_line(exc))
                raise
            state.set(key, "finished")
    selection = select_models(dataset, work, opts, prep) if opts.select and prep.selects else None
    if opts.select and not prep.selects:
        log(f"[select] skipped: {NO_VALIDATION}; export it with `segkit export {dataset} -c CONFIG --folds all`")
    return {"work": str(wd.root), "status": status, "selection": selection}


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def format_summary(result: dict[str, Any]) -> str:
    """The final table: each configuration's folds and CV score, and the selected model."""
    lines = [f"work directory: {result['work']}"]
    scores = {}
    if result["selection"]:
        scores = {c["name"]: c["score"] for c in result["selection"]["candidates"]}
    width = max([len(c) for c in result["status"]] + [len(n) for n in scores] + [13])
    lines.append(f"{'candidate'.ljust(width)}  folds                      CV mean fg Dice")
    for config, folds in result["status"].items():
        done = " ".join(f"{f}:{s.split()[0]}" for f, s in folds.items())
        score = scores.get(config)
        lines.append(f"{config.ljust(width)}  {done:<26} {'-' if score is None else f'{score:.4f}'}")
    for name, score in scores.items():
        if name not in result["status"]:
            lines.append(f"{name.ljust(width)}  {'(ensemble)':<26} {'-' if score is None else f'{score:.4f}'}")
    if result["selection"]:
        sel = result["selection"]
        decision = sel["postprocessing"]["decision"]
        pp = []
        if decision.get("keep_largest_foreground"):
            pp.append("largest foreground component")
        pp += [f"largest component of class {lb}" for lb in decision.get("keep_largest_per_class", [])]
        lines.append(f"selected: {sel['winner']['name']} (score {sel['winner']['score']:.4f}); "
                     f"postprocessing: {', '.join(pp) or 'none'}")
    return "\n".join(lines)
