"""`dayfly completion bash|zsh|fish`: print the shell completion script (click's)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "fish", "zsh")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash: `eval "$(dayfly completion bash)"` in
    ~/.bashrc; zsh: the same in ~/.zshrc; fish: save it to
    ~/.config/fish/completions/dayfly.fish)."""
    cls = get_completion_class(shell)
    assert cls is not None  # every choice is one of click's shells
    root = ctx.find_root().command
    click.echo(cls(root, {}, "dayfly", "_DAYFLY_COMPLETE").source())
