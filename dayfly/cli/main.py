"""Entry point of the `dayfly` command."""

from __future__ import annotations

import click

from .. import __version__
from .up import up


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dayfly")
def cli() -> None:
    """dayfly: a self-hosted serverless platform for Python functions."""


cli.add_command(up)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
