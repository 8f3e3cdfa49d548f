"""Everything a training run needs, resolved and checked before any network is built.

Every problem the user can cause (no plans, unknown configuration, a fold the splits do not have,
cases not preprocessed, missing previous-stage predictions, a network description this version cannot
build) is a one-line :class:`SegkitError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.dataset.folds import is_all, parse_fold
from toolkit.dataset.labels import LabelSpec, label_spec
from toolkit.errors import SegkitError
from toolkit.io.atomic import read_json
from toolkit.planning.axes import IDENTITY, plans_transpose, working_entry
from toolkit.training.targets import TrainingTargets, training_targets
from toolkit.workdir import WorkDir


@dataclass(frozen=True)
class TrainingSetup:
    work: WorkDir
    dataset_root: Path
    config: str
    fold: int | str  # a fold index of the splits, or "all" (toolkit.dataset.folds)
    plans: dict[str, Any]
    dataset_json: dict[str, Any]
    preprocessed: Path
    train_cases: tuple[str, ...]
    val_cases: tuple[str, ...]
    labels: tuple[int, ...]  # the label values (LabelSpec.all_labels), background first, no ignore
    image_channels: int
    cascade_folder: Path | None  # predicted_next_stage/<previous config>/ for the cascade
    label_spec: LabelSpec | None = None  # classes or regions, ignore (None: plain classes ``labels``)

    @property
    def plan(self) -> dict[str, Any]:
        """The configuration in working axis order (plans.json stores input order; planning/axes.py)."""
        return working_entry(self.plans, self.config)

    @property
    def num_classes(self) -> int:
        """Label values, background included: the cascade's one-hot input block (docs/interfaces.md "Network")."""
        return len(self.labels)

    @property
    def spec(self) -> LabelSpec:
        return self.label_spec or label_spec({"background": 0, **{str(v): v for v in self.labels if v != 0}})

    @property
    def num_outputs(self) -> int:
        """Network output channels: one per label value (softmax) or one per foreground region (sigmoid)."""
        return self.spec.num_outputs

    @property
    def targets(self) -> TrainingTargets:
        return training_targets(self.spec)

    @property
    def in_channels(self) -> int:
        return self.image_channels + (self.num_classes if self.cascade_folder else 0)

    @property
    def held_out(self) -> bool:
        """False for fold all: its "validation" cases are its training cases."""
        return not is_all(self.fold)

    @property
    def fold_dir(self) -> Path:
        return self.work.model(self.config, self.fold)


def training_label_spec(plans: dict[str, Any], dataset_json: dict[str, Any], where: Path) -> LabelSpec:
    """The run's label model: the plans' ``labels`` (a copy of dataset.json's), with dataset.json's
    ``regions_class_order`` (plans written before regions existed do not hold it)."""
    labels = plans.get("labels") or dataset_json["labels"]
    order = plans.get("regions_class_order", dataset_json.get("regions_class_order"))
    return label_spec(labels, order, where)


def _fold_cases(dataset_root: Path, wd: WorkDir, done: list[str], fold: int | str) -> tuple[list[str], list[str]]:
    """(training cases, validation cases) of a fold; fold all: every preprocessed case for both, like
    nnU-Net v2 (its validation patches only feed the per-epoch pseudo-Dice; no splits are needed)."""
    from toolkit.dataset.splits import resolve_splits

    if is_all(fold):
        cases = sorted(done)
        return cases, cases
    splits = resolve_splits(dataset_root, done, wd.splits, unknown="unpreprocessed")  # run `segkit preprocess`
    if not 0 <= fold < len(splits):
        raise SegkitError(f"fold {fold} does not exist (the splits have folds 0..{len(splits) - 1}, or 'all')",
                          wd.splits)
    return splits[fold]["train"], splits[fold]["val"]


def _check_network(plan: dict[str, Any], config: str, plans_path: Path) -> None:
    """The configuration must describe a network this version can build (topology, ``architecture``)."""
    from toolkit.network.architecture import UNetSpec

    try:
        UNetSpec.from_plan(plan, in_channels=1, num_classes=2)
    except (KeyError, TypeError, ValueError) as exc:
        raise SegkitError(f"configuration {config!r}: unusable network description ({exc})", plans_path) from None


def _check_preprocessed_axes(plans: dict[str, Any], folder: Path, case_id: str, dataset_root: Path,
                             config: str) -> None:
    """Stored arrays must be in the plans' working order (a re-plan can change ``transpose_forward``)."""
    forward, _ = plans_transpose(plans)
    stored = read_json(folder / f"{case_id}.json").get("transpose_forward", IDENTITY)
    if list(stored) != forward:
        raise SegkitError(f"preprocessed with transpose_forward {list(stored)} but the plans say {forward}; run "
                          f"`segkit preprocess {dataset_root} -c {config} --overwrite`", folder)


def resolve_training(dataset_root: Path, work: str | Path | None, config: str, fold: int | str) -> TrainingSetup:
    """Read plans, splits and the preprocessed case list for one (configuration, fold)."""
    from toolkit.preprocessing.storage import list_cases

    wd = WorkDir.for_dataset(work, dataset_root)
    if not wd.plans.is_file():
        raise SegkitError(f"plans not found; run `segkit plan {dataset_root}` first", wd.plans)
    plans = read_json(wd.plans)
    configs = plans.get("configurations", {})
    if config not in configs:
        raise SegkitError(f"configuration {config!r} is not in the plans (available: {', '.join(configs)})", wd.plans)
    plan = configs[config]
    _check_network(plan, config, wd.plans)
    ds_json_path = wd.dataset_json if wd.dataset_json.is_file() else Path(dataset_root) / "dataset.json"
    dataset_json = read_json(ds_json_path)
    folder = wd.preprocessed(plan.get("data_identifier", config))
    done = list_cases(folder)
    if not done:
        raise SegkitError(f"no preprocessed cases; run `segkit preprocess {dataset_root} -c {config}` first", folder)
    _check_preprocessed_axes(plans, folder, done[0], dataset_root, config)
    fold = parse_fold(fold)
    train, val = _fold_cases(Path(dataset_root), wd, done, fold)
    prev = plan.get("previous_stage")
    spec = training_label_spec(plans, dataset_json, ds_json_path)
    return TrainingSetup(
        work=wd, dataset_root=Path(dataset_root), config=config, fold=fold, plans=plans,
        dataset_json=dataset_json, preprocessed=folder, train_cases=tuple(train), val_cases=tuple(val),
        labels=spec.all_labels,
        image_channels=len(plans.get("channel_names") or dataset_json["channel_names"]),
        cascade_folder=(wd.root / "predicted_next_stage" / prev) if prev else None,
        label_spec=spec,
    )
