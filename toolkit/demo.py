"""``segkit demo``: the whole method on the built-in phantom challenge, on CPU, in minutes.

Each stage runs the same code as its CLI command: phantom challenge -> verify -> ``segkit run``
(fingerprint, plan, preprocess, 2d and 3d_fullres in k-fold cross-validation, selection with pairwise
ensembles and postprocessing) -> ``segkit export`` (bundle) -> ``segkit predict -m BUNDLE`` on the
held-out test cases -> ``segkit evaluate`` against their reference labels -> ``segkit report``.
Epochs are tiny by default, so the Dice shows that the machinery works, not what the method reaches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click

from toolkit.dataset.verify import check_dataset
from toolkit.phantom import make_phantom_dataset

DEMO_EXTENT_MM = (48.0, 56.0, 56.0)  # small phantoms: the demo must finish in minutes on 2 CPU cores


@dataclass
class DemoOptions:
    n_train: int = 10
    folds: int = 5
    epochs: int = 10
    iters_per_epoch: int = 25
    seed: int = 0


def _stage(title: str) -> None:
    click.echo(click.style(f"==> {title}", bold=True), err=True)


def run_demo(work: Path, options: DemoOptions | None = None) -> int:
    """Run the demo into ``work``; returns the exit code. Re-running resumes finished stages."""
    from toolkit.bundle import make_bundle
    from toolkit.bundle.predictor import BundlePredictor
    from toolkit.evaluation.evaluate import evaluate_folder
    from toolkit.evaluation.summary import format_table
    from toolkit.inference.pipeline import predict_folder
    from toolkit.pipeline.run import RunOptions, format_summary, run_pipeline
    from toolkit.pipeline.stages import ensure_splits
    from toolkit.report import build_report
    from toolkit.workdir import WorkDir

    o = options or DemoOptions()
    work = Path(work)
    _stage(f"phantom challenge -> {work / 'raw'}")
    dataset = make_phantom_dataset(work / "raw", n_train=o.n_train, n_test=2, seed=o.seed, extent_mm=DEMO_EXTENT_MM)
    _stage("verify")
    report = check_dataset(dataset)
    if not report.ok:
        for p in report.problems:
            click.echo(p, err=True)
        return 2
    click.echo(report.summary(), err=True)
    from toolkit.dataset import load_dataset

    ensure_splits(load_dataset(dataset), WorkDir.for_dataset(work, dataset), folds=o.folds)
    _stage(f"segkit run ({o.folds} folds x {o.epochs} epochs x {o.iters_per_epoch} iterations)")
    jobs = min(2, os.cpu_count() or 1)
    result = run_pipeline(dataset, work, RunOptions(epochs=o.epochs, iters_per_epoch=o.iters_per_epoch,
                                                    val_iters=2, num_workers=0, device="cpu", jobs=jobs))
    click.echo(format_summary(result))
    bundle = work / "bundle"
    _stage(f"segkit export -> {bundle}")
    make_bundle(dataset, work, bundle, overwrite=True)
    predictions = work / "predictions"
    _stage(f"segkit predict -m {bundle} -i imagesTs -> {predictions}")
    predictor = BundlePredictor.from_bundle(bundle, device="cpu")
    outcome = predict_folder(predictor, dataset / "imagesTs", predictions, predictor.num_image_channels)
    if outcome.failed:
        return 1
    _stage("segkit evaluate (test cases vs their reference labels)")
    spec = load_dataset(dataset)
    summary = evaluate_folder(predictions, dataset / "labelsTs", spec.raw, output=predictions / "summary.json")
    click.echo(format_table(summary, summary["labels"]))
    index = build_report(dataset, work, test_summary=predictions / "summary.json")
    _stage("done")
    click.echo(f"report:      {index}\nbundle:      {bundle}\npredictions: {predictions}")
    return 0
