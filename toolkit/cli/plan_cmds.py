"""``segkit fingerprint`` and ``segkit plan``: the dataset fingerprint and the self-configured plans.

No torch is imported: planning is a pure function of the fingerprint (toolkit.planning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from toolkit.cli.options import gpu_memory_option, preset_option
from toolkit.errors import SegkitError


def _write_fingerprint(dataset: Path, work: Path | None, jobs: int | None) -> tuple[Path, dict[str, Any]]:
    """Compute the fingerprint, write it and the dataset.json copy into the work dir."""
    from toolkit.dataset import load_dataset
    from toolkit.fingerprint import default_jobs
    from toolkit.pipeline.stages import write_fingerprint
    from toolkit.workdir import WorkDir

    wd = WorkDir.for_dataset(work, dataset)
    return wd.fingerprint, write_fingerprint(load_dataset(dataset), wd, jobs or default_jobs())


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--work", type=click.Path(path_type=Path), default=None, help="work directory (default $SEGKIT_WORK or ./segkit_work)")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="worker processes (default: CPU count, at most 8)")
def fingerprint(dataset: Path, work: Path | None, jobs: int | None) -> None:
    """Measure the training set: spacings, shapes after cropping, foreground intensities.

    Writes <WORK>/<dataset>/fingerprint.json and prints its path.
    """
    path, fp = _write_fingerprint(dataset, work, jobs)
    click.echo(f"fingerprint: {fp['num_cases']} cases, median relative size after cropping "
               f"{fp['median_relative_size_after_cropping']:.3f}", err=True)
    click.echo(str(path))


def _spec_from_json(path: Path, n_cases: int):
    """A DatasetSpec from a bare dataset.json (planning needs channel names, labels, numTraining)."""
    from toolkit.dataset import DatasetSpec
    from toolkit.io.atomic import read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise SegkitError("dataset.json must hold a JSON object", path)
    channels = data.get("channel_names", data.get("modality"))
    labels = data.get("labels")
    if not isinstance(channels, dict) or not channels:
        raise SegkitError("needs channel_names {\"0\": \"CT\", ...}", path)
    if [str(k) for k in channels] != [str(i) for i in range(len(channels))]:
        raise SegkitError("channel_names keys must be \"0\", \"1\", ... in order", path)
    if not isinstance(labels, dict) or labels.get("background") != 0:
        raise SegkitError("labels must be an object with \"background\": 0", path)
    num = data.get("numTraining", n_cases)
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise SegkitError("numTraining must be a positive integer", path)
    return DatasetSpec(path.parent, {str(k): str(v) for k, v in channels.items()}, dict(labels), num,
                       str(data.get("file_ending", ".nii.gz")), data)


def _load_inputs(dataset, work, jobs, fp_path, ds_json):
    """Return (fingerprint, DatasetSpec, work dir or None) for either calling mode."""
    from toolkit.dataset import load_dataset
    from toolkit.io.atomic import read_json
    from toolkit.planning import check_fingerprint
    from toolkit.workdir import WorkDir

    if (dataset is None) == (fp_path is None):
        raise SegkitError("give either DATASET or --fingerprint FP.json with --dataset-json DS.json")
    if fp_path is not None:
        if ds_json is None:
            raise SegkitError("--fingerprint needs --dataset-json")
        fp = read_json(fp_path)
        check_fingerprint(fp, fp_path)
        return fp, _spec_from_json(ds_json, len(fp["spacings"])), None
    from toolkit.fingerprint import default_jobs
    from toolkit.pipeline.stages import ensure_fingerprint

    spec = load_dataset(dataset)
    wd = WorkDir.for_dataset(work, dataset)
    fp = ensure_fingerprint(spec, wd, jobs or default_jobs())  # (re)computed when missing or stale
    check_fingerprint(fp, wd.fingerprint)
    return fp, spec, wd


@click.command()
@click.argument("dataset", type=click.Path(path_type=Path), required=False)
@click.option("--work", type=click.Path(path_type=Path), default=None, help="work directory (default $SEGKIT_WORK or ./segkit_work)")
@preset_option
@gpu_memory_option
@click.option("--explain", is_flag=True, help="print the rule trace (the preset's rules, which rule fired with which numbers) on stderr")
@click.option("--fingerprint", "fp_path", type=click.Path(path_type=Path), default=None,
              help="plan from this fingerprint alone (no images needed); prints plans JSON on stdout")
@click.option("--dataset-json", "ds_json", type=click.Path(path_type=Path), default=None,
              help="dataset.json to use with --fingerprint")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="workers if the fingerprint must be computed first")
@click.option("--like", "like", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="fine-tuning: take this plans.json's configurations (topology, patch size, spacing, normalisation) "
                   "with this dataset's labels and intensity statistics")
def plan(dataset, work, preset, gpu_memory_gb, explain, fp_path, ds_json, jobs, like) -> None:
    """Infer the configurations (2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres) from the fingerprint.

    --preset chooses nnU-Net v2's planner to follow (default: the plain U-Net; resenc-m/l/xl: the
    residual-encoder U-Net presets). With DATASET: writes <WORK>/<dataset>/plans.json and prints the
    plans table.
    With --fingerprint/--dataset-json: prints the plans JSON on stdout and the table on stderr.
    With --like SOURCE_PLANS.json: the source's configurations moved to this dataset (for
    `segkit train ... --pretrained-weights`); plans.json records "transferred_from".
    """
    import json

    from toolkit.io.atomic import atomic_write_json
    from toolkit.planning import format_plans_table, load_preset, plan_experiment

    if gpu_memory_gb is not None and gpu_memory_gb <= 0:
        raise SegkitError(f"--gpu-memory-gb must be positive, got {gpu_memory_gb}")
    settings = load_preset(preset)
    fp, spec, wd = _load_inputs(dataset, work, jobs, fp_path, ds_json)
    if like is not None:
        from toolkit.io.atomic import read_json
        from toolkit.planning.transfer import transfer_plans

        plans, trace = transfer_plans(read_json(like), like, fp, spec)
    else:
        plans, trace = plan_experiment(fp, spec, gpu_memory_gb, settings)
    if explain:
        click.echo("\n".join(trace), err=True)
    table = format_plans_table(plans)
    if wd is None:
        click.echo(table, err=True)
        click.echo(json.dumps(plans, indent=2))
        return
    atomic_write_json(wd.plans, plans)
    click.echo(f"plans written to {wd.plans}", err=True)
    click.echo(table)
