"""``segkit demo``: the pipeline on the built-in phantom challenge, as far as the engine reaches."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import work_option


@click.command()
@work_option
@click.option("--cases", default=10, show_default=True, type=click.IntRange(min=5), help="Phantom training cases.")
@click.pass_context
def demo(ctx: click.Context, work: Path | None, cases: int) -> None:
    """Generate the phantom challenge and run the pipeline on it end to end (CPU, a few minutes)."""
    from toolkit.demo import run_demo
    from toolkit.workdir import default_work_root

    ctx.exit(run_demo(work or default_work_root(), n_train=cases))
