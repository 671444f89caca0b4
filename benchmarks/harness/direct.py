"""A function on one isolation tier, driven straight through its sandbox backend (no gateway,
no scheduler): for benchmarks of the instance itself."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from dayfly.platform import available_backends
from dayfly.sandbox.safe import SafeSandbox
from dayfly.types import FunctionSpec, Limits


@contextlib.asynccontextmanager
async def direct_sandbox(tier: str, name: str,
                         handler: str) -> AsyncIterator[tuple[SafeSandbox, FunctionSpec]]:
    """The tier's sandbox and a function `name` whose handler.py is `handler`, with an empty
    dependencies folder as deployed functions have; everything is removed at the end."""
    cls = available_backends().get(tier)
    if cls is None:
        raise SystemExit(f"isolation tier {tier!r} is not available here (the linux tier "
                         "needs root or unprivileged user namespaces)")
    with tempfile.TemporaryDirectory(prefix=f"dayfly-{name}-") as tmp:
        code, deps = Path(tmp, "code"), Path(tmp, "deps")
        code.mkdir()
        deps.mkdir()
        (code / "handler.py").write_text(handler)
        spec = FunctionSpec(name=name, version="$LATEST", revision="r", arn="arn",
                            handler="handler.handler", code_dir=str(code), deps_dir=str(deps),
                            isolation=tier, limits=Limits(memory_mb=128, timeout_s=5))
        sb = SafeSandbox(cls(Path(tmp, "data")))
        try:
            yield sb, spec
        finally:
            await sb.close()
