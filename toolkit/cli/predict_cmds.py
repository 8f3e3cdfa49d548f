"""``segkit predict``: raw images -> segmentations with a trained model folder (fold ensemble)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from toolkit.cli.options import FOLD
from toolkit.errors import SegkitError


class GreedyOption(click.Option):
    """An option that takes every following value up to the next option: ``--folds 0 1 2``.

    Click has no variadic options; this hooks its parser's option record (a private API), and if a future
    click lacks it the option still works in click's own repeated form ``--folds 0 --folds 1``.
    """

    def add_to_parser(self, parser, ctx):  # noqa: ANN001 - click's own signature
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            record = getattr(parser, "_long_opt", {}).get(name) or getattr(parser, "_short_opt", {}).get(name)
            if record is None or not hasattr(record, "process"):
                continue
            original = record.process

            def process(value, state, original=original):  # noqa: ANN001
                original(value, state)
                while state.rargs and not state.rargs[0].startswith("-"):
                    original(state.rargs.pop(0), state)

            record.process = process


@click.command()
@click.option("-m", "--model", "model", required=True, type=click.Path(path_type=Path),
              help="Model folder <WORK>/<dataset>/models/<config>, or a bundle made by `segkit export`.")
@click.option("-i", "--input", "in_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of raw images <case>_<XXXX><ending>.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (<case><ending>, optional <case>.npz).")
@click.option("-f", "--folds", "folds", type=FOLD, multiple=True, cls=GreedyOption,
              help="Folds to ensemble (repeat or list: --folds 0 1 2; 'all' is the model trained on every "
                   "case); default: every trained numbered fold, else fold all.")
@click.option("-c", "--config", "config", default=None,
              help="Configuration inside MODEL when MODEL is <WORK>/<dataset>/models.")
@click.option("--no-tta", is_flag=True, help="Disable mirroring test-time augmentation.")
@click.option("--step", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.5, show_default=True,
              help="Sliding-window step as a fraction of the patch.")
@click.option("--save-probabilities", is_flag=True, help="Also write <case>.npz with the probabilities.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda[:N] or mps.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "mixed"]), default="auto", show_default=True,
              help="auto: mixed precision on CUDA, fp32 on CPU; mixed: also bf16 on CPU (faster where the CPU "
                   "has native bf16, labels may differ in a few voxels); fp32: never.")
@click.option("--overwrite", is_flag=True, help="Predict cases whose output already exists again.")
@click.option("--num-parts", type=click.IntRange(min=1), default=1, show_default=True,
              help="Split the sorted case list into this many parts (one per job) ...")
@click.option("--part-id", type=click.IntRange(min=0), default=0, show_default=True,
              help="... and predict part PART_ID only (cases PART_ID, PART_ID + NUM_PARTS, ...).")
def predict(model: Path, in_dir: Path, out_dir: Path, folds: tuple[int | str, ...], config: str | None, no_tta: bool,
            step: float, save_probabilities: bool, device: str, precision: str, overwrite: bool, num_parts: int,
            part_id: int) -> int:
    """Predict every case of IN_DIR with MODEL's folds (probabilities averaged) into OUT_DIR.

    MODEL is a model folder (one configuration) or a bundle from `segkit export` (the selected
    configurations, ensembled, with the selected postprocessing; its checksums are verified first).
    """
    from toolkit.bundle import is_bundle
    from toolkit.inference.pipeline import predict_folder, shard

    shard([], num_parts, part_id)  # a wrong --part-id is an error before any model is loaded

    if is_bundle(model):
        from toolkit.bundle.predictor import BundlePredictor

        predictor = BundlePredictor.from_bundle(model, device, not no_tta, step, list(folds) or None, precision)
        n_channels = predictor.num_image_channels
    else:
        from toolkit.inference.predictor import Predictor

        folder = model / config if config else model
        predictor = Predictor.from_model_folder(folder, list(folds) or None, device, not no_tta, step, precision)
        n_channels = predictor.model.num_image_channels
    report = predict_folder(predictor, in_dir, out_dir, n_channels, overwrite, save_probabilities,
                            num_parts=num_parts, part_id=part_id)
    click.echo(f"predicted {len(report.predicted)}, skipped {len(report.skipped)} (already done), "
               f"failed {len(report.failed)} -> {out_dir}")
    if report.internal_errors:
        print(f"segkit: internal error: {report.internal_errors} case(s) failed unexpectedly", file=sys.stderr)
        return 1
    if report.failed:
        raise SegkitError(f"{len(report.failed)} case(s) failed: {', '.join(sorted(report.failed))}", in_dir)
    return 0
