"""Options shared by several commands, so every command spells them the same way."""

from __future__ import annotations

from pathlib import Path

import click

work_option = click.option(
    "--work", "work", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Work directory (default: $SEGKIT_WORK, else ./segkit_work).",
)
jobs_option = click.option("-j", "--jobs", "jobs", type=click.IntRange(min=1), default=None,
                           help="Parallel worker processes (default: number of CPU cores, at most 8).")
dataset_argument = click.argument(
    "dataset", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DATASET"
)
precision_option = click.option(
    "--precision", type=click.Choice(["auto", "fp32", "mixed"]), default=None,
    help="Training precision (default auto: fp16 AMP on CUDA, bf16 on CPUs with native bf16, else fp32).",
)
augmentation_config_option = click.option(
    "--augmentation-config", "augmentation_config", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="YAML file overriding any of the augmentation settings (keys and defaults: docs/augmentation.md).",
)
augment_on_option = click.option(
    "--augment-on", "augment_on", type=click.Choice(["device", "workers"]), default=None,
    help="Where the training augmentation runs: device (batched torch on the training device; the loader only "
         "crops) or workers (numpy in the loader processes). Default: device on CUDA, workers otherwise. "
         "Recorded in the checkpoint.",
)
preset_option = click.option(
    "--preset", "preset", default=None, metavar="NAME",
    help="Planner preset (toolkit/planning/presets.yaml): default (nnU-Net's plain U-Net), resenc-m, resenc-l or "
         "resenc-xl (nnU-Net's residual-encoder presets). Default: default.",
)
gpu_memory_option = click.option(
    "--gpu-memory-gb", "gpu_memory_gb", type=float, default=None,
    help="GPU memory budget the plans must fit (default: the preset's target: 8 GB for default and resenc-m, "
         "24 for resenc-l, 40 for resenc-xl).",
)


class FoldParam(click.ParamType):
    """A fold index (0, 1, ...) or ``all`` (train on every case): one parser for every command."""

    name = "fold"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's own signature
        from toolkit.dataset.folds import parse_fold
        from toolkit.errors import SegkitError

        try:
            return parse_fold(value)
        except SegkitError as exc:
            self.fail(str(exc), param, ctx)


FOLD = FoldParam()
pretrained_weights_option = click.option(
    "--pretrained-weights", "pretrained_weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Start from this checkpoint (fine-tuning): tensors matching by name and shape are loaded, the output "
         "heads are re-initialised when the label set differs. Not with --resume.",
)
