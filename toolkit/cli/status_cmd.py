"""``segkit status``: where each job of a ``segkit run`` stands (no torch import)."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import dataset_argument, work_option


@click.command()
@dataset_argument
@work_option
def status(dataset: Path, work: Path | None) -> None:
    """Show each job (prepare, train/<config>/<fold>, select) as waiting, running, failed or finished.

    Reads <WORK>/<dataset>/jobs.json (written by `segkit run`, local or on SLURM) and the model
    folders: a fold with checkpoint_final.pt and its validation summary is finished; a fold whose
    trainer is alive (its progress.json, written by `segkit train` too) is training or validating,
    with its fold ETA; one whose trainer died or was stopped is interrupted (a record older than
    5 minutes, or whose pid is gone on this host, is dead). The epoch column counts completed epochs.
    """
    from toolkit.pipeline.state import JobState, format_status, status_rows
    from toolkit.workdir import WorkDir

    wd = WorkDir.for_dataset(work, dataset)
    click.echo(format_status(status_rows(wd), JobState(wd).executor))
