"""``segkit verify`` and ``segkit split``: dataset-level commands (no torch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from toolkit.cli.options import dataset_argument


@click.command()
@dataset_argument
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Reader threads (default: up to 4).")
@click.option("--quiet", "-q", is_flag=True, help="Print problems only, no notes.")
@click.pass_context
def verify(ctx: click.Context, dataset: Path, jobs: int | None, quiet: bool) -> None:
    """Check a canonical dataset (nnU-Net v2 layout); print OK or one line per problem (exit 2).

    Checks dataset.json, file names and endings, image/label pairing, every channel and label file's
    content and grid, declared label values, NaN/Inf, dimensionality and groups.json. Never writes.
    """
    from toolkit.dataset.verify import check_dataset

    report = check_dataset(dataset, workers=jobs, progress=sys.stderr.isatty())
    if not quiet:
        for note in report.notes:
            click.echo(note, err=True)
    if report.ok:
        click.echo(report.summary())
        return
    for problem in report.problems:
        click.echo(problem)
    click.echo(f"{len(report.problems)} problem(s) found in {dataset}", err=True)
    ctx.exit(2)


@click.command()
@dataset_argument
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2), help="Number of folds.")
@click.option("--seed", default=12345, show_default=True, type=int, help="Shuffle seed (nnU-Net's default).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write splits_final.json here (default: print it on stdout).")
def split(dataset: Path, folds: int, seed: int, output: Path | None) -> None:
    """Make deterministic k-fold splits that never separate a patient's cases (splits_final.json format).

    Groups come from the dataset's groups.json; an existing splits_final.json in the dataset wins.
    """
    from toolkit.dataset import discover_cases, load_dataset, load_groups
    from toolkit.dataset.splits import load_or_make_splits

    spec = load_dataset(dataset)
    case_ids = [c.id for c in discover_cases(spec, "Tr")]
    groups = load_groups(dataset, case_ids)
    splits = load_or_make_splits(dataset, case_ids, groups, output, folds, seed)
    if output is None:
        click.echo(json.dumps(splits, indent=2))
    else:
        sizes = ", ".join(str(len(s["val"])) for s in splits)
        click.echo(f"wrote {output} ({len(splits)} folds, validation sizes {sizes})", err=True)
