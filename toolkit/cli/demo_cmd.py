"""``segkit demo``: the pipeline on the built-in phantom challenge, end to end."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import work_option


@click.command()
@work_option
@click.option("--cases", default=10, show_default=True, type=click.IntRange(min=5), help="Phantom training cases.")
@click.option("--folds", default=5, show_default=True, type=click.IntRange(min=2), help="Cross-validation folds.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1), help="Epochs per fold.")
@click.option("--iters-per-epoch", default=25, show_default=True, type=click.IntRange(min=1),
              help="Training iterations per epoch.")
@click.pass_context
def demo(ctx: click.Context, work: Path | None, cases: int, folds: int, epochs: int, iters_per_epoch: int) -> None:
    """Run the whole method on a synthetic phantom challenge (CPU, minutes; no download).

    Writes the phantom dataset, the work directory, an exported bundle, test-set predictions with
    their Dice, and the HTML report under WORK (default ./segkit_work). Re-running resumes.
    """
    from toolkit.demo import DemoOptions, run_demo
    from toolkit.workdir import default_work_root

    ctx.exit(run_demo(work or default_work_root(), DemoOptions(cases, folds, epochs, iters_per_epoch)))
