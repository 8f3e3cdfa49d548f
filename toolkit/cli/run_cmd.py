"""``segkit run``: the whole method on one dataset, resumable."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import (
    FOLD,
    augment_on_option,
    augmentation_config_option,
    dataset_argument,
    gpu_memory_option,
    precision_option,
    preset_option,
    pretrained_weights_option,
    work_option,
)


@click.command()
@dataset_argument
@work_option
@click.option("-c", "--config", "configs", multiple=True,
              help="Configuration(s) to train (repeatable; default: every planned one). "
                   "A cascade brings its low-res stage. Limited compute: -c 3d_fullres.")
@click.option("-f", "--fold", "folds", type=FOLD, multiple=True,
              help="Fold(s) to train (repeatable; default: every fold of the splits). Limited compute: -f 0. "
                   "-f all: one model on every case (no validation, no selection).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per fold (default 1000).")
@click.option("--iters-per-epoch", type=click.IntRange(min=1), default=None, help="Iterations per epoch (default 250).")
@click.option("--val-iters", type=click.IntRange(min=0), default=None, help="Validation batches per epoch (default 50).")
@click.option("--num-workers", type=click.IntRange(min=0), default=None, help="Augmentation workers (0 = in-process).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None, help="Training device.")
@click.option("--seed", type=int, default=None, help="Training seed (default 12345).")
@precision_option
@augmentation_config_option
@augment_on_option
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes for fingerprint, preprocessing and evaluation (default: CPUs, at most 8).")
@preset_option
@gpu_memory_option
@click.option("--no-select", is_flag=True, help="Stop after training (no model selection).")
@click.option("--num-gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel ranks per fold (local executor; on SLURM: --slurm-gpus-per-job).")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="local: everything in this process; slurm: one job per (configuration, fold) via submitit.")
@click.option("--slurm-partition", default=None, help="sbatch --partition.")
@click.option("--slurm-gpus-per-job", type=click.IntRange(min=0), default=1, show_default=True,
              help="GPUs of each training job (its data-parallel ranks); 0 for CPU jobs.")
@click.option("--slurm-time", default=None, help="sbatch --time of each job, e.g. 2-00:00:00 (default: the partition's).")
@click.option("--slurm-cpus-per-job", type=click.IntRange(min=1), default=None, help="sbatch --cpus-per-task.")
@click.option("--slurm-mem-gb", type=click.FloatRange(min=1), default=None, help="sbatch --mem of each job.")
@click.option("--max-retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Resubmissions of a failed or preempted job (training resumes from its checkpoint).")
@click.option("--poll-seconds", type=click.FloatRange(min=0.1), default=15.0, show_default=True,
              help="How often the slurm executor checks its jobs.")
@pretrained_weights_option
def run(dataset: Path, work: Path | None, configs: tuple[str, ...], folds: tuple[int | str, ...], epochs: int | None,
        iters_per_epoch: int | None, val_iters: int | None, num_workers: int | None, device: str | None,
        seed: int | None, precision: str | None, augmentation_config: Path | None, augment_on: str | None, jobs: int | None, preset: str | None, gpu_memory_gb: float | None, no_select: bool, num_gpus: int, executor: str,
        slurm_partition: str | None, slurm_gpus_per_job: int, slurm_time: str | None,
        slurm_cpus_per_job: int | None, slurm_mem_gb: float | None, max_retries: int,
        poll_seconds: float, pretrained_weights: Path | None) -> None:
    """Fingerprint -> plan -> preprocess -> train every configuration and fold -> select.

    Finished work is skipped and interrupted folds resume, so a killed run is continued by running
    the same command again. Prints the summary table on stdout. With --executor slurm this process
    submits the jobs and waits for them; `segkit status` shows where they are.
    """
    import os

    from toolkit.pipeline.run import RunOptions, format_summary, run_pipeline
    from toolkit.planning import load_preset
    from toolkit.training.augment_settings import load_settings_file

    load_preset(preset)  # an unknown preset fails before any fingerprinting
    augmentation = load_settings_file(augmentation_config) if augmentation_config is not None else None
    opts = RunOptions(list(configs), list(folds), epochs, iters_per_epoch, val_iters, num_workers, device, seed,
                      jobs or min(8, os.cpu_count() or 1), gpu_memory_gb, not no_select, num_gpus, precision,
                      augmentation, preset=preset, augment_on=augment_on)
    if pretrained_weights is not None:  # folds that resume keep their own weights
        from toolkit.training.pretrained import describe

        opts.pretrained_weights, opts.pretrained_sha256 = describe(pretrained_weights)
    if executor == "slurm":
        from toolkit.pipeline.cluster import SlurmOptions, run_on_cluster

        slurm = SlurmOptions(slurm_partition, slurm_gpus_per_job, slurm_time, slurm_cpus_per_job, slurm_mem_gb,
                             max_retries, poll_seconds)
        click.echo(format_summary(run_on_cluster(dataset, work, opts, slurm)))
        return
    click.echo(format_summary(run_pipeline(dataset, work, opts)))
