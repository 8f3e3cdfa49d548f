"""``segkit export`` (inference bundle) and ``segkit report`` (static HTML report)."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import FOLD, dataset_argument, work_option
from toolkit.cli.predict_cmds import GreedyOption


@click.command("export")
@dataset_argument
@work_option
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Bundle folder to create (must be absent or empty unless --overwrite).")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder.")
@click.option("-c", "--config", "config", default=None,
              help="Export this configuration instead of the selection's winner (with --folds).")
@click.option("-f", "--folds", "folds", type=FOLD, multiple=True, cls=GreedyOption,
              help="With -c: the folds to include (--folds all: the model trained on every case; "
                   "default: every numbered fold, else fold all).")
def export(dataset: Path, work: Path | None, out: Path, overwrite: bool, config: str | None,
           folds: tuple[int | str, ...]) -> None:
    """Write a self-contained inference bundle of the selected model (folds + postprocessing).

    `segkit predict -m BUNDLE` and `segkit package BUNDLE` use it with no work directory; every file
    is checksummed in manifest.json and a tampered bundle is refused. With -c CONFIG [--folds ...]
    the named model is exported (e.g. --folds all, which selection never picks); it keeps the
    selection's postprocessing only if the selection's winner is that configuration.
    """
    from toolkit.bundle import make_bundle

    manifest = make_bundle(dataset, work, out, overwrite, config, list(folds) or None)
    listed = ", ".join(f"{c}: {v}" for c, v in manifest["folds"].items())
    score = "-" if manifest["cv_score"] is None else f"{manifest['cv_score']:.4f}"
    click.echo(f"bundle {out}: {' + '.join(manifest['configurations'])} (folds {listed}), "
               f"CV score {score}, {len(manifest['files'])} files", err=True)
    click.echo(str(out))


@click.command()
@dataset_argument
@work_option
@click.option("--test-summary", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="summary.json of `segkit evaluate` on test-set predictions, shown beside the CV Dice.")
def report(dataset: Path, work: Path | None, test_summary: Path | None) -> None:
    """Write <WORK>/<dataset>/report/index.html: summary first (selected model, CV and test Dice),
    validation cases worst first with overlays, curves per configuration, CV, postprocessing, plans."""
    from toolkit.report import build_report

    click.echo(str(build_report(dataset, work, test_summary=test_summary)))
