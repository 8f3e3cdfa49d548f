"""``segkit evaluate`` and ``segkit select``: scoring predictions and choosing the final model (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from toolkit.cli.options import dataset_argument, jobs_option, work_option


def _workers(jobs: int | None) -> int:
    return jobs if jobs is not None else min(os.cpu_count() or 1, 8)


@click.command()
@click.argument("pred_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="PRED_DIR")
@click.argument("ref_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="REF_DIR")
@click.option("--dataset-json", "dataset_json", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The dataset's dataset.json (labels and file ending).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Summary JSON file (default: PRED_DIR/summary.json).")
@click.option("--tolerance-mm", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Surface tolerance of the normalized surface Dice, in mm.")
@jobs_option
def evaluate(pred_dir: Path, ref_dir: Path, dataset_json: Path, output: Path | None, tolerance_mm: float,
             jobs: int | None) -> None:
    """Score predicted label files against references: per case and class Dice, IoU, TP/FP/FN, volumes,
    HD95 and normalized surface Dice (spacing-aware).

    Writes the JSON summary and prints a table of class means on stdout. A class that is empty in both
    prediction and reference does not count towards its mean.
    """
    from toolkit.evaluation import evaluate_folder, format_table
    from toolkit.io.atomic import read_json

    ds = read_json(dataset_json)
    output = output if output is not None else pred_dir / "summary.json"
    summary = evaluate_folder(pred_dir, ref_dir, ds, tolerance_mm=tolerance_mm, workers=_workers(jobs),
                              output=output)
    click.echo(format_table(summary, summary["labels"]))
    click.echo(f"{len(summary['per_case'])} case(s) evaluated; wrote {output}", err=True)


@click.command(name="select")
@dataset_argument
@work_option
@click.option("--surface-metrics", "tolerance_mm", type=click.FloatRange(min=0), default=None, metavar="TOL_MM",
              help="Also compute HD95 and NSD (tolerance TOL_MM) in every CV summary; slower on large images.")
@jobs_option
def select_cmd(dataset: Path, work: Path | None, tolerance_mm: float | None, jobs: int | None) -> None:
    """Choose the final model from cross-validation: every configuration and every pairwise ensemble
    (averaged probabilities), best mean foreground Dice wins (tie: the simpler one); then decide the
    largest-component postprocessing. Writes cv/, ensembles/ and selection.json in the work directory.
    """
    from toolkit.selection import format_selection, select_for_dataset

    result = select_for_dataset(dataset, work, workers=_workers(jobs), tolerance_mm=tolerance_mm)
    click.echo(format_selection(result))
