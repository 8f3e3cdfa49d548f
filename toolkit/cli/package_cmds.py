"""``segkit package`` and ``segkit package-evaluation``: grand-challenge containers (toolkit.containers)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.containers.platform import (
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MB,
    DEFAULT_PORT,
    DEFAULT_TIME_LIMIT_S,
    PORT_VARIABLE,
)

_OPTION_HELP = "Override a challenge YAML fact, e.g. -O 'container.output.slug=my-seg' (repeatable)."


def _challenge(name: str, options: tuple[str, ...]):
    """The challenge adapter, with -O overrides: its container section and labels are handed to the engine
    as values (toolkit.containers never imports challenges/)."""
    from challenges.base import parse_options
    from challenges.registry import get_adapter

    return get_adapter(name, parse_options(options))


_KEEP_CACHE = click.option("--keep-build-cache", is_flag=True,
                           help="Keep the intermediate build images (faster rebuilds; several GB on vfs engines).")


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--challenge", required=True, help="Challenge whose YAML holds the container interface.")
@click.option("-t", "--tag", required=True, help="Image name, NAME[:TAG].")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Export `docker save | gzip` here (image.tar.gz) after every check passed.")
@click.option("--test-input", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Cases to self-test before export: grand-challenge job folders or <case>_<XXXX> images.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="torch build in the image (cuda only for a job with a GPU selected, e.g. a T4).")
@click.option("--base-image", default=None, help="Base image with python3 (default: python:3.11-slim-bookworm).")
@click.option("--weights-tarball", is_flag=True,
              help="Leave the bundle out of the image; write <output>-model.tar.gz for /opt/ml/model.")
@click.option("--mode", type=click.Choice(["run", "invoke"]), default="run", show_default=True,
              help=f"run: one job per container; invoke: HTTP server on ${PORT_VARIABLE} or {DEFAULT_PORT} "
                   "(/health, /invoke).")
@click.option("--no-tta", is_flag=True, help="Disable mirroring test-time augmentation in the container.")
@click.option("--step", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.5, show_default=True)
@click.option("--memory", "memory", default=f"{DEFAULT_MEMORY_MB}m", show_default=True,
              help="Self-test memory limit of the job's process (the platform's 8 GB job: 7168m; N GB: (N-1)*1024m).")
@click.option("--cpus", type=click.FloatRange(0.1), default=DEFAULT_CPUS, show_default=True,
              help="CPUs of the self-test (the platform's 8 GB CPU job runs on 2 vCPUs).")
@click.option("--time-limit", type=click.FloatRange(1.0), default=float(DEFAULT_TIME_LIMIT_S), show_default=True,
              help="Seconds each self-test case may take (a challenge phase's limit per job).")
@click.option("--gpus", type=click.IntRange(0), default=0, show_default=True,
              help="GPUs for the self-test (0: the platform's default job has none).")
@click.option("--pip-arg", "pip_args", multiple=True, help="Extra argument for `pip download` (repeatable).")
@click.option("--context", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the build context in this (new or empty) folder.")
@_KEEP_CACHE
@click.option("-O", "--option", "options", multiple=True, metavar="KEY=VALUE", help=_OPTION_HELP)
def package(bundle: Path, challenge: str, tag: str, out: Path | None, test_input: Path | None, device: str,
            base_image: str | None, weights_tarball: bool, mode: str, no_tta: bool, step: float, memory: str,
            cpus: float, time_limit: float, gpus: int, pip_args: tuple[str, ...], context: Path | None,
            keep_build_cache: bool, options: tuple[str, ...]) -> None:
    """Build a grand-challenge algorithm image of BUNDLE (from `segkit export`) against DOCKER_HOST.

    The image is checked (non-root user, amd64, entry point, labels, size), self-tested on
    --test-input cases against host-side prediction when given (each case under the job's limits:
    --memory, --cpus, --time-limit, --gpus; a case that would not fit fails), and exported with -o.
    Prints a JSON report (build time, sizes, per-case self-test) on stdout.
    """
    from toolkit.containers.build import DEFAULT_BASE_IMAGE
    from toolkit.containers.packager import PackageOptions
    from toolkit.containers.packager import package as run_package
    from toolkit.containers.platform import JobLimits, parse_memory_mb

    report = run_package(PackageOptions(
        bundle=bundle, challenge=challenge, container=_challenge(challenge, options).container, tag=tag, out=out,
        test_input=test_input, device=device, base_image=base_image or DEFAULT_BASE_IMAGE,
        weights_tarball=weights_tarball, mode=mode, tta=not no_tta, step=step, pip_args=pip_args,
        limits=JobLimits(parse_memory_mb(memory), cpus, time_limit, gpus),
        context=context, keep_build_cache=keep_build_cache))
    click.echo(json.dumps(report, indent=2))


@click.command("package-evaluation")
@click.option("--challenge", required=True, help="Challenge whose YAML holds the labels and output socket.")
@click.option("-t", "--tag", required=True, help="Image name, NAME[:TAG].")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Export `docker save | gzip` here.")
@click.option("--dataset-json", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Take the labels from this dataset.json (challenges whose YAML has none, e.g. decathlon).")
@click.option("--tolerance-mm", type=float, default=1.0, show_default=True, help="NSD tolerance.")
@click.option("--base-image", default=None, help="Base image with python3 (default: python:3.11-slim-bookworm).")
@click.option("--pip-arg", "pip_args", multiple=True, help="Extra argument for `pip download` (repeatable).")
@_KEEP_CACHE
@click.option("-O", "--option", "options", multiple=True, metavar="KEY=VALUE", help=_OPTION_HELP)
def package_evaluation(challenge: str, tag: str, out: Path | None, dataset_json: Path | None, tolerance_mm: float,
                       base_image: str | None, pip_args: tuple[str, ...], keep_build_cache: bool,
                       options: tuple[str, ...]) -> None:
    """Build a grand-challenge evaluation image: /input/predictions.json + algorithm outputs + ground truth
    in /opt/ml/input/data/ground_truth -> /output/metrics.json (Dice, IoU, HD95, NSD per class)."""
    from toolkit.containers.build import DEFAULT_BASE_IMAGE
    from toolkit.containers.packager import package_evaluation as run
    from toolkit.io.atomic import read_json

    adapter = _challenge(challenge, options)
    labels = read_json(dataset_json)["labels"] if dataset_json else adapter.config.get("labels")
    report = run(challenge, adapter.container, labels, tag, out, base_image or DEFAULT_BASE_IMAGE,
                 tolerance_mm, pip_args, keep_build_cache)
    click.echo(json.dumps(report, indent=2))
