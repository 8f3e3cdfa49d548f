"""The demo pipeline on the phantom challenge. Each stage is the same code path the CLI runs."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.dataset.verify import check_dataset
from toolkit.phantom import make_phantom_dataset


def _stage(title: str) -> None:
    click.echo(click.style(f"==> {title}", bold=True), err=True)


def run_demo(work: Path, n_train: int = 10, seed: int = 0) -> int:
    """Run the demo; returns the exit code."""
    work = Path(work)
    _stage(f"phantom challenge -> {work / 'raw'}")
    dataset = make_phantom_dataset(work / "raw", n_train=n_train, n_test=2, seed=seed)
    _stage("verify")
    report = check_dataset(dataset)
    if not report.ok:
        for p in report.problems:
            click.echo(p, err=True)
        return 2
    click.echo(report.summary())
    return 0
