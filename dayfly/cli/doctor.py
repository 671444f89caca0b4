"""`dayfly doctor`: which isolation tiers work on this machine, and why not; which Python
interpreters functions can run on."""

from __future__ import annotations

import click
from rich.text import Text

from .output import console, json_option, print_json, table


@click.command()
@json_option
def doctor(as_json: bool) -> None:
    """Check this machine (no running dayfly needed): isolation tiers and what they need."""
    from ..platform import interpreter_report, tier_report

    report = tier_report()
    found = interpreter_report()
    if as_json:
        print_json({"tiers": report, "interpreters": found})
        return
    t = table("tier", "works", "~why")
    for r in report:
        works = Text("yes", style="green") if r["available"] else Text("no", style="red")
        name = r["name"] + (" (default)" if r["default"] else "")
        why = r["why"] + ("  [weak: rlimits only]" if r["weak"] and r["available"] else "")
        t.add_row(name, works, why)
    console().print(t)
    it = table("runtime", "interpreter", "~path")
    for i in found:
        mark = " (dayfly's own)" if i["default"] else ""
        it.add_row(f"{i['runtime']}{mark}", str(i["version"]), str(i["path"]))
    console().print(it)
    if not any(r["available"] and not r["weak"] for r in report):
        console(stderr=True).print("[bold red]warning:[/] only the process tier works here: "
                                   "functions would run without isolation (no namespaces, "
                                   "no seccomp), so `dayfly up` refuses them unless started "
                                   "with --allow-weak-isolation. The linux tier needs root, "
                                   "or a kernel that allows unprivileged user namespaces.")
