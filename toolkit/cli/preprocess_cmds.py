"""``segkit preprocess``: the dataset's training cases -> arrays at each configuration's spacing (no torch)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from toolkit.cli.options import dataset_argument, jobs_option, work_option


@click.command()
@dataset_argument
@work_option
@click.option("-c", "--config", "configs", multiple=True,
              help="Configuration(s) to preprocess (repeatable; default: every one in plans.json).")
@jobs_option
@click.option("--overwrite", is_flag=True, help="Redo cases that are already finished.")
@click.pass_context
def preprocess(ctx: click.Context, dataset: Path, work: Path | None, configs: tuple[str, ...],
               jobs: int | None, overwrite: bool) -> None:
    """Crop, normalise and resample every training case per <WORK>/<dataset>/plans.json.

    Resumable: finished cases are skipped unless --overwrite. A failing case is reported by id and
    the others still finish; the exit code is then 2 (bad input) or 1 (internal failure).
    Prints one line per configuration: its name, folder and number of finished cases.
    """
    from toolkit.errors import SegkitError
    from toolkit.io.atomic import read_json
    from toolkit.preprocessing.runner import preprocess_dataset
    from toolkit.preprocessing.storage import list_cases
    from toolkit.workdir import WorkDir

    wd = WorkDir.for_dataset(work, dataset)
    if not wd.plans.is_file():
        raise SegkitError(f"plans not found; run `segkit plan {dataset}` first", wd.plans)
    plans = read_json(wd.plans)
    chosen = list(configs) or list(plans.get("configurations", {}))
    if not chosen:
        raise SegkitError("plans list no configurations", wd.plans)
    workers = jobs or min(8, os.cpu_count() or 1)
    result = preprocess_dataset(dataset, plans, chosen, wd.root / "preprocessed", workers=workers,
                                overwrite=overwrite)
    for config, folder in result["folders"].items():
        click.echo(f"{config}\t{folder}\t{len(list_cases(folder))} cases")
    click.echo(f"preprocessed {result['done']} case(s), {result['skipped']} already done, "
               f"{len(result['failed'])} failed", err=True)
    if result["failed"]:
        for outcome in result["failed"]:
            click.echo(f"segkit: error: case {outcome.job.case_id} ({outcome.job.config}): {outcome.error}",
                       err=True)
        ctx.exit(2 if all(o.user_error for o in result["failed"]) else 1)
