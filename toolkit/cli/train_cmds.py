"""``segkit train``: one configuration on one fold, resumable (imports torch only when run)."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import (
    FOLD,
    augment_on_option,
    augmentation_config_option,
    dataset_argument,
    precision_option,
    pretrained_weights_option,
    work_option,
)


@click.command()
@dataset_argument
@click.option("-c", "--config", "config", required=True, help="Configuration from plans.json (e.g. 3d_fullres).")
@click.option("-f", "--fold", "fold", type=FOLD, required=True,
              help="Fold index of the splits, or 'all': every training case, no validation predictions.")
@work_option
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs (default 1000).")
@click.option("--iters-per-epoch", type=click.IntRange(min=1), default=None, help="Training iterations per epoch (default 250).")
@click.option("--val-iters", type=click.IntRange(min=0), default=None, help="Validation patches batches per epoch (default 50).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (default: the plan's).")
@click.option("--num-workers", type=click.IntRange(min=0), default=None,
              help="Augmentation worker processes (0 = in-process; default from the CPU count and device).")
@click.option("--save-every", type=click.IntRange(min=1), default=None, help="checkpoint_latest.pt every N epochs (default 50).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None,
              help="Device (default auto: CUDA, then MPS, then CPU).")
@click.option("--resume", is_flag=True, help="Continue from the fold's checkpoint_latest.pt.")
@click.option("--seed", type=int, default=None, help="Random seed (default 12345).")
@precision_option
@augmentation_config_option
@augment_on_option
@click.option("--skip-validation", is_flag=True, help="Do not predict the validation cases at the end.")
@click.option("--num-gpus", type=click.IntRange(min=1), default=None,
              help="Data-parallel ranks (DDP; one GPU each, or N CPU processes with --device cpu). The batch "
                   "size stays the global batch. Under torchrun the rank count comes from torchrun.")
@pretrained_weights_option
def train(dataset: Path, config: str, fold: int | str, work: Path | None, epochs: int | None,
          iters_per_epoch: int | None, val_iters: int | None, batch_size: int | None, num_workers: int | None,
          save_every: int | None, device: str | None, resume: bool, seed: int | None,
          precision: str | None, augmentation_config: Path | None, augment_on: str | None, skip_validation: bool,
          num_gpus: int | None, pretrained_weights: Path | None) -> None:
    """Train CONFIG on FOLD of DATASET's preprocessed data (docs/method.md 1.2).

    Writes <WORK>/<dataset>/models/<config>/fold_<k>/ (checkpoints, training_log.txt, progress.png)
    and prints that folder on stdout when done. Ctrl-C saves the last completed epoch; --resume goes on.
    -f all trains on every case into fold_all/ (no validation predictions, ignored by selection).
    """
    from toolkit.errors import SegkitError
    from toolkit.training.augment_settings import load_settings_file
    from toolkit.training.distributed import context_from_env, launch_training
    from toolkit.training.options import TrainerOptions
    from toolkit.training.setup import resolve_training
    from toolkit.training.trainer import stored_options

    if pretrained_weights is not None and resume:
        raise SegkitError("--pretrained-weights only starts a run; --resume continues the fold's own checkpoint "
                          "(give one of them)")
    setup = resolve_training(dataset, work, config, fold)
    # resuming keeps the interrupted run's options unless one is given again explicitly
    base = stored_options(setup.fold_dir) if resume else TrainerOptions()
    options = base.with_changes(
        epochs=epochs, iters_per_epoch=iters_per_epoch, val_iters=val_iters, batch_size=batch_size,
        num_workers=num_workers, save_every=save_every, device=device, seed=seed, world_size=num_gpus,
        precision=precision, augment_on=augment_on,
    )
    if augmentation_config is not None:  # overrides the defaults, or the resumed run's recorded settings
        options = options.with_changes(augmentation=load_settings_file(augmentation_config, options.augmentation))
    if pretrained_weights is not None:
        from toolkit.training.pretrained import describe

        path, digest = describe(pretrained_weights)
        options = options.with_changes(pretrained_weights=path, pretrained_sha256=digest)
    if skip_validation:
        options = options.with_changes(final_validation=False)
    fold_dir = launch_training(setup, options, resume=resume)
    if context_from_env() is None or context_from_env().is_main:  # under torchrun: rank 0 answers
        click.echo(str(fold_dir))
