"""The ``deid`` command line. One module per subcommand, imported only when that command runs
(torch is slow to import, and ``deid --help`` should be instant)."""

from __future__ import annotations

import importlib

import click

from deid import __version__

# command name -> "module:attribute" of its click.Command
SUBCOMMANDS: dict[str, str] = {
    "synth": "deid.cli.synth:synth",
    "train": "deid.cli.train:train",
    "evaluate": "deid.cli.evaluate:evaluate",
    "score": "deid.cli.score:score",
    "demo": "deid.cli.demo:demo",
    "scrub": "deid.cli.scrub:scrub",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deid (mami-deid)")
def main() -> None:
    """Audit and remove re-identification risk in medical image releases."""
