"""``segkit convert`` and ``segkit submission``: the challenge adapters on the command line."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.errors import SegkitError

_OPTION_HELP = "Override a YAML fact, e.g. -O 'labels={background: 0, liver: 1}' (repeatable)."


def _adapter(challenge: str, options: tuple[str, ...], config: str | None):
    import yaml

    from challenges.base import merge_config, parse_options
    from challenges.registry import get_adapter

    adapter = get_adapter(challenge)
    if config:
        try:
            extra = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SegkitError(f"cannot read YAML ({str(exc).splitlines()[0]})", config) from None
        if not isinstance(extra, dict):
            raise SegkitError("must hold a YAML mapping", config)
        adapter.config = merge_config(adapter.config, extra)
    adapter.config = merge_config(adapter.config, parse_options(options))
    return adapter


def _warn_unverified(adapter, options: tuple[str, ...], config: str | None) -> None:
    """Facts the YAML marks ``unverified: true`` decide file names or labels: say so before they count.

    A fact the user set with ``-O`` or ``--config`` is the user's own and gets no warning.
    """
    import yaml

    from challenges.base import parse_options, unverified_facts

    given = {str(k).split(".")[0] for k in parse_options(options)}
    if config:
        given |= set(yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {})
    for key, line in unverified_facts(adapter.config):
        if key not in given:
            click.echo(f"warning: {adapter.name}: {line}; check it against the challenge's own rules", err=True)


@click.command()
@click.argument("challenge", required=False)
@click.argument("raw_dir", required=False, type=click.Path(path_type=Path))
@click.argument("out_dir", required=False, type=click.Path(path_type=Path))
@click.option("--list", "list_", is_flag=True, help="List the known challenges and exit.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUT_DIR.")
@click.option("-O", "--option", "options", multiple=True, metavar="KEY=VALUE", help=_OPTION_HELP)
@click.option("--config", type=click.Path(dir_okay=False), help="YAML file merged over the challenge's YAML.")
def convert(challenge, raw_dir, out_dir, list_, overwrite, options, config) -> None:
    """Convert a raw challenge download RAW_DIR into the canonical dataset folder OUT_DIR."""
    from challenges.registry import ADAPTERS

    if list_:
        for name, cls in sorted(ADAPTERS.items()):
            click.echo(f"{name:<10} {cls.summary}")
        return
    if not (challenge and raw_dir and out_dir):
        raise click.UsageError("give CHALLENGE RAW_DIR OUT_DIR, or --list")
    from challenges.convert import convert as run_convert

    summary = run_convert(_adapter(challenge, options, config), raw_dir, out_dir, overwrite=overwrite)
    click.echo(f"{summary['dataset']}: {summary['training']} training cases "
               f"({summary['patients']} patients), {summary['test']} test cases")


@click.command()
@click.argument("challenge")
@click.argument("pred_dir", type=click.Path(path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace a non-empty OUT_DIR.")
@click.option("-O", "--option", "options", multiple=True, metavar="KEY=VALUE", help=_OPTION_HELP)
@click.option("--config", type=click.Path(dir_okay=False), help="YAML file merged over the challenge's YAML.")
def submission(challenge, pred_dir, out_dir, overwrite, options, config) -> None:
    """Write canonical predictions PRED_DIR (<case>.nii.gz) in the challenge's format into OUT_DIR."""
    from challenges.convert import make_submission

    adapter = _adapter(challenge, options, config)
    _warn_unverified(adapter, options, config)
    written = make_submission(adapter, pred_dir, out_dir, overwrite=overwrite)
    for path in written:
        click.echo(str(path))
