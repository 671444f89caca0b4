"""`dayfly completion bash|zsh|fish`: print the shell completion script (click's)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

HOW = {"bash": 'eval "$(dayfly completion bash)"   # in ~/.bashrc',
       "zsh": 'eval "$(dayfly completion zsh)"    # in ~/.zshrc',
       "fish": "dayfly completion fish > ~/.config/fish/completions/dayfly.fish"}


@click.command()
@click.argument("shell", type=click.Choice(sorted(HOW)))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL; e.g. `eval "$(dayfly completion bash)"`."""
    cls = get_completion_class(shell)
    assert cls is not None  # every choice is one of click's shells
    root = ctx.find_root().command
    click.echo(cls(root, {}, "dayfly", "_DAYFLY_COMPLETE").source())
    if not click.get_text_stream("stdout").isatty():
        return
    click.echo(f"# enable it: {HOW[shell]}", err=True)
