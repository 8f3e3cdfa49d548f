"""The ``segkit`` command line.

Commands live in their own modules and are imported only when invoked (or when ``--help`` lists
them), so that commands which run no network never import torch and ``segkit --help`` is instant.
Errors in the user's input print one line on stderr and exit with code 2; internal failures exit 1.
"""

from __future__ import annotations

import importlib
import sys

import click

from toolkit import __version__
from toolkit.errors import SegkitError

# name -> "module:attribute". Add a command here only once it works end to end.
COMMANDS: dict[str, str] = {
    "verify": "toolkit.cli.dataset_cmds:verify",
    "split": "toolkit.cli.dataset_cmds:split",
    "demo": "toolkit.cli.demo_cmd:demo",
    "fingerprint": "toolkit.cli.plan_cmds:fingerprint",
    "plan": "toolkit.cli.plan_cmds:plan",
    "preprocess": "toolkit.cli.preprocess_cmds:preprocess",
    "predict": "toolkit.cli.predict_cmds:predict",
    "convert": "toolkit.cli.challenge_cmds:convert",
    "submission": "toolkit.cli.challenge_cmds:submission",
    "evaluate": "toolkit.cli.eval_cmds:evaluate",
    "select": "toolkit.cli.eval_cmds:select_cmd",
    "run": "toolkit.cli.run_cmd:run",
    "export": "toolkit.cli.bundle_cmds:export",
    "report": "toolkit.cli.bundle_cmds:report",
    "train": "toolkit.cli.train_cmds:train",
    "package": "toolkit.cli.package_cmds:package",
    "package-evaluation": "toolkit.cli.package_cmds:package_evaluation",
    "status": "toolkit.cli.status_cmd:status",
}


class LazyGroup(click.Group):
    """A click group that imports each command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        """User errors become one line on stderr and exit code 2, however the CLI is called."""
        try:
            return super().invoke(ctx)
        except SegkitError as exc:
            click.echo(f"segkit: error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="segkit")
def cli() -> None:
    """segkit: self-configuring segmentation (nnU-Net method) from raw challenge data to containers."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors -> one line + exit 2; bugs -> one line + exit 1."""
    try:
        rv = cli.main(args=argv, prog_name="segkit", standalone_mode=False)
    except SegkitError as exc:
        click.echo(f"segkit: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("segkit: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("segkit: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
        click.echo(f"segkit: internal error: {type(exc).__name__}: {exc} (set SEGKIT_DEBUG=1 for a traceback)",
                   err=True)
        if _debug():
            raise
        sys.exit(1)
    else:
        sys.exit(rv if isinstance(rv, int) else 0)


def _debug() -> bool:
    import os

    return bool(os.environ.get("SEGKIT_DEBUG"))
