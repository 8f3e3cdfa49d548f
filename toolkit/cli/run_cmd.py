"""``segkit run``: the whole method on one dataset, resumable."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import dataset_argument, work_option


@click.command()
@dataset_argument
@work_option
@click.option("-c", "--config", "configs", multiple=True,
              help="Configuration(s) to train (repeatable; default: every planned one). "
                   "Limited compute: -c 3d_fullres.")
@click.option("-f", "--fold", "folds", type=click.IntRange(min=0), multiple=True,
              help="Fold(s) to train (repeatable; default: all). Limited compute: -f 0.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per fold (default 1000).")
@click.option("--iters-per-epoch", type=click.IntRange(min=1), default=None, help="Iterations per epoch (default 250).")
@click.option("--val-iters", type=click.IntRange(min=0), default=None, help="Validation batches per epoch (default 50).")
@click.option("--num-workers", type=click.IntRange(min=0), default=None, help="Augmentation workers (0 = in-process).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None, help="Training device.")
@click.option("--seed", type=int, default=None, help="Training seed (default 12345).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes for fingerprint, preprocessing and evaluation (default: CPUs, at most 8).")
@click.option("--gpu-memory-gb", type=float, default=8.0, show_default=True, help="Planner's GPU memory budget.")
@click.option("--no-select", is_flag=True, help="Stop after training (no model selection).")
def run(dataset: Path, work: Path | None, configs: tuple[str, ...], folds: tuple[int, ...], epochs: int | None,
        iters_per_epoch: int | None, val_iters: int | None, num_workers: int | None, device: str | None,
        seed: int | None, jobs: int | None, gpu_memory_gb: float, no_select: bool) -> None:
    """Fingerprint -> plan -> preprocess -> train every configuration and fold -> select.

    Finished work is skipped and interrupted folds resume, so a killed run is continued by running
    the same command again. Prints the summary table on stdout.
    """
    import os

    from toolkit.pipeline.run import RunOptions, format_summary, run_pipeline

    opts = RunOptions(list(configs), list(folds), epochs, iters_per_epoch, val_iters, num_workers, device, seed,
                      jobs or min(8, os.cpu_count() or 1), gpu_memory_gb, not no_select)
    click.echo(format_summary(run_pipeline(dataset, work, opts)))
