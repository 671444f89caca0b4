"""Entry point of the `dayfly` command."""

from __future__ import annotations

import click

from .. import __version__
from .alias import alias
from .builtins import builtins
from .completion import completion
from .deploy import deploy
from .dlq import dlq
from .doctor import doctor
from .functions import ls, rm
from .ingest import ingest
from .instances import instances, scale_to_zero
from .invocations import invocations
from .invoke import invoke
from .keys import keys
from .layers import layers
from .logs import logs
from .nodes import nodes
from .routes import routes
from .secrets import secrets
from .tokens import token
from .top import top
from .transfer import download, upload
from .triggers import trigger
from .up import up
from .versions import publish, versions


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dayfly")
def cli() -> None:
    """dayfly: a self-hosted serverless platform for Python functions."""


for command in (up, deploy, invoke, ls, rm, logs, versions, publish, alias, instances,
                scale_to_zero, invocations, keys, secrets, doctor, dlq, trigger, ingest, builtins):
    cli.add_command(command)
for command in (top, token, routes, completion, upload, download, nodes, layers):
    cli.add_command(command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
