"""The weak tier as the control plane sees it: what it does not enforce, and the operator's opt-in.

The `process` tier forks instances with rlimits only (sandbox/process.py): RLIMIT_AS for
memory, the host's timer for the timeout, the output cap and a scrubbed environment. Nothing
keeps its functions from this node's files, network, processes or data directory, so a node
runs them only when its operator said so at start, and every view of such a function says so.
"""

from __future__ import annotations

from typing import Any

WEAK_TIERS = frozenset({"process"})
ALLOW_FLAG = "--allow-weak-isolation"
ALLOW_ENV = "DAYFLY_ALLOW_WEAK_ISOLATION"
WEAK_LABEL = "weak isolation: no network/filesystem/process isolation"

# Configuration fields (Lambda API names) the weak tier shows but does not enforce: the
# function reaches whatever this node's user can (every bucket's files, every secret in the
# data directory, any host, any number of processes, the host's /tmp)
NOT_ENFORCED = {"process": ("Network", "Files", "Buckets", "Secrets", "Pids",
                            "EphemeralStorage")}


def describe(tier: str) -> dict[str, Any]:
    """The fields every view of a function's configuration carries about its tier (the CLI
    and the dashboard show the warning as given, and hide the rows named in NotEnforced)."""
    weak = tier in WEAK_TIERS
    return {"IsolationWeak": weak, "IsolationWarning": WEAK_LABEL if weak else None,
            "NotEnforced": list(NOT_ENFORCED.get(tier, ()))}


def refusal(tier: str, asked: bool, enabled: list[str]) -> str:
    """Why a node that was not started with the opt-in refuses a function on the weak tier."""
    how = (f"the operator allows it by starting the node with `dayfly up {ALLOW_FLAG}` "
           f"(or {ALLOW_ENV}=1, or `--isolation {tier}`)")
    if asked:
        return (f"isolation tier '{tier}' is weak (no network, filesystem or process isolation: "
                f"the function would run as this node's user, with its files and network) and "
                f"this node was not started to allow it; {how}")
    others = ", ".join(enabled) or "none"
    return (f"this node's default isolation tier is '{tier}' (no stronger default tier works on "
            f"this machine: see `dayfly doctor`), which is weak (no network, filesystem or "
            f"process isolation) and this node was not started to allow it; {how}, or the "
            f"function declares another tier (enabled here: {others})")
