"""Custom runtimes (`runtime = "provided"`) on the host side: what their instances are given.

The instance runs the bundle's `bootstrap` behind the Lambda Runtime API, which it serves
itself, on its own loopback (runtime/runtime_api.py): the host opens no network to it and
speaks to it over the instance's channel like to any other. The jailed tiers add a shell
(`/bin/sh` and `bash`, read-only from the host) so that a bootstrap script can run; a compiled
bootstrap needs nothing but the shared libraries every sandbox already has.
"""

from __future__ import annotations

import os

PROVIDED = ("provided", "provided.al2", "provided.al2023")
# (host path, sandbox path): the shells of the jailed tiers' provided runtimes
SHELLS = (("/usr/bin/dash", "/usr/bin/sh"), ("/usr/bin/bash", "/usr/bin/bash"))


def provided(runtime: str) -> bool:
    """Whether functions of this runtime bring their own (a `bootstrap`)."""
    return runtime in PROVIDED


def shells(runtime: str) -> list[tuple[str, str]]:
    """Binds a jailed sandbox of this runtime adds: the shells, where the host has them."""
    if not provided(runtime):
        return []
    return [(src, dst) for src, dst in SHELLS if os.path.isfile(src)]
