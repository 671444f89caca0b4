"""`dayfly up`: run the platform in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

import click
from rich.console import Console

from ..cluster.settings import ClusterError, load_config, resolve
from ..cluster.wiring import check_services
from ..config import Settings
from ..errors import DayflyError
from ..modes import PRIVATE_UMASK
from .load_options import LoadOptions, load_options
from .package import zip_dir

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello"


def _listen(host: str, port: int, family: socket.AddressFamily, what: str,
            backlog: int = 2048) -> socket.socket:
    try:
        return socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}{what}: "
                                   f"{exc.strerror or exc}") from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Another name clients reach this node by (the Host header), besides "
                   "address literals, localhost and the machine's hostname; `*` accepts any. "
                   "Repeatable. Other names are refused (DNS rebinding).")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
              help="A web page origin (scheme://host[:port]) allowed to call this node "
                   "besides the node itself. Repeatable. Other cross-site requests are refused.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where state lives (default ~/.dayfly or $DAYFLY_DATA_DIR).")
@click.option("--isolation", type=click.Choice(["process", "linux", "gvisor"]), default=None,
              help="Default isolation tier (default: the strongest available). Choosing "
                   "`process` allows the weak tier, as --allow-weak-isolation does.")
@click.option("--allow-weak-isolation", is_flag=True, envvar="DAYFLY_ALLOW_WEAK_ISOLATION",
              show_envvar=True,
              help="Let functions run on the weak `process` tier (rlimits only: no network, "
                   "filesystem or process isolation). Without it they are refused.")
@click.option("--example", is_flag=True, help="Deploy the example function 'hello' at start.")
@click.option("--max-chain-depth", default=16, show_default=True, type=click.IntRange(1, 1000),
              help="Stop events caused by events deeper than this (recursive loops).")
@click.option("--records-flush-interval", default=0.25, show_default=True,
              type=click.FloatRange(0.01, 86400), metavar="SECONDS",
              help="How often buffered invocation records are written to disk.")
@click.option("--zygote-idle", default=600.0, show_default=True, envvar="DAYFLY_ZYGOTE_IDLE",
              show_envvar=True, type=click.FloatRange(0.1, 86400), metavar="SECONDS",
              help="Stop a function's zygote after this long without instances.")
@click.option("--code-grace", default=None, envvar="DAYFLY_CODE_GRACE", show_envvar=True,
              type=click.FloatRange(0, 86400), metavar="SECONDS",
              help="Remove code no version refers to after this long [default: --zygote-idle "
                   "plus 60].")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, envvar="DAYFLY_CONFIG", show_envvar=True,
              help="A TOML config file; its [cluster] table holds the cluster settings below "
                   "(database, nats, name, node_id, advertise, key_file) and turns cluster "
                   "mode on.")
@click.option("--cluster", is_flag=True, envvar="DAYFLY_CLUSTER", show_envvar=True,
              help="Run as one node of a cluster: state in PostgreSQL, events, blobs and "
                   "membership on NATS JetStream (docs/cluster.md).")
@click.option("--database", metavar="DSN", default=None,
              help="Cluster mode: the PostgreSQL DSN [env DAYFLY_DATABASE].")
@click.option("--nats", metavar="URL[,URL]", default=None,
              help="Cluster mode: NATS server URL(s) [env DAYFLY_NATS].")
@click.option("--cluster-name", metavar="NAME", default=None,
              help="Cluster mode: prefix of every NATS stream and bucket [default: dayfly; "
                   "env DAYFLY_CLUSTER_NAME].")
@click.option("--node-id", metavar="ID", default=None,
              help="Cluster mode: this node's id [default: hostname-port].")
@click.option("--advertise", metavar="URL", default=None,
              help="Cluster mode: the URL other nodes reach this node at [default: "
                   "http://HOST:PORT].")
@click.option("--cluster-key-file", metavar="FILE", default=None,
              help="Cluster mode: the cluster key (32 bytes, hex), the same on every node "
                   "[env DAYFLY_CLUSTER_KEY_FILE, or DAYFLY_CLUSTER_KEY in hex].")
@click.option("--ack-wait", metavar="SECONDS", default=None,
              help="Cluster mode: an event a node took goes to another node this long after "
                   "the node stops answering [default: 30; env DAYFLY_ACK_WAIT].")
@load_options
def up(host: str, allow_hosts: tuple[str, ...], allow_origins: tuple[str, ...], port: int,
       data_dir: Path | None, isolation: str | None,
       allow_weak_isolation: bool, example: bool, max_chain_depth: int,
       records_flush_interval: float, zygote_idle: float, code_grace: float | None,
       log_level: str, config_file: Path | None, cluster: bool, database: str | None,
       nats: str | None, cluster_name: str | None, node_id: str | None,
       advertise: str | None, cluster_key_file: str | None, ack_wait: str | None,
       load: LoadOptions) -> None:
    """Run dayfly (API, gateway, scheduler) in the foreground; Ctrl-C stops it cleanly."""
    import resource

    import uvicorn

    from ..gateway.app import build_app
    from ..platform import Platform

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # each instance holds a few fds
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from ..gateway.connections import protocol_class

    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    http = protocol_class(load.limits, fd_limit)
    # a burst of connections is accepted in one go, before any can be refused: the two
    # backlogs together stay within the descriptors kept for the platform
    backlog = max(16, min(2048, (fd_limit - http.guard.max_connections) // 4))
    # listen first: a taken port is a clear error before anything starts, and with --port 0
    # the platform (and the S3 endpoint its functions are given) knows the real port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = _listen(host, port, family, "", backlog)
    # the functions' S3 listener: their relays reach the S3 endpoint there, and only it
    # (docs/security.md); loopback of the same family, any free port
    function_s3 = _listen("::1" if family == socket.AF_INET6 else "127.0.0.1", 0, family,
                          " (the functions' S3 listener)", backlog)
    http.guard.shared_listeners.add(function_s3.getsockname()[:2])
    port = listener.getsockname()[1]
    settings = Settings(host=host, port=port, function_s3=function_s3.getsockname()[:2],
                        default_isolation=isolation, allow_weak_isolation=allow_weak_isolation,
                        max_chain_depth=max_chain_depth,
                        records_flush_s=records_flush_interval, zygote_idle_s=zygote_idle,
                        code_grace_s=code_grace)
    settings.max_queue, settings.queue_timeout_s = load.max_queue, load.queue_timeout_s
    settings.allow_hosts, settings.allow_origins = allow_hosts, allow_origins
    if data_dir is not None:
        settings.data_dir = data_dir.expanduser().resolve()
    try:
        from_file = load_config(config_file) if config_file is not None else {}
        if cluster or "cluster" in from_file:
            settings.cluster = resolve(
                {"database": database, "nats": nats, "name": cluster_name, "node_id": node_id,
                 "advertise": advertise, "key_file": cluster_key_file,
                 "ack_wait": ack_wait}, from_file,
                host=host, port=port)
            check_services(settings.cluster)  # unreachable: one line now, not a traceback later
    except ClusterError as exc:
        listener.close()
        function_s3.close()
        raise click.ClickException(exc.message) from None
    console = Console(stderr=True)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    # whatever it writes is its owner's only unless opened on purpose (dayfly/modes.py)
    os.umask(PRIVATE_UMASK)
    try:
        platform = Platform(settings)
    except DayflyError as exc:  # e.g. the secrets key is missing: say so, no traceback
        raise click.ClickException(exc.message) from None

    async def started(p: Platform) -> None:
        url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        tier = p.default_isolation
        if example and "hello" not in p.registry.functions and tier not in p.refused:
            import base64

            code = base64.b64encode(zip_dir(EXAMPLE)).decode()
            await p.functions.create({"FunctionName": "hello", "Handler": "handler.handler",
                                      "Code": {"ZipFile": code}})
        backend = p.sandboxes[tier].backend if tier in p.sandboxes else None
        weak = " [bold red](weak: rlimits only)[/]" if backend and backend.weak else ""
        if tier in p.refused:
            weak = (" [bold red](weak: refused; functions need another tier, or restart with "
                    "--allow-weak-isolation)[/]")
        elif getattr(backend, "rootless", False):
            limits = ("delegated cgroups" if getattr(backend, "cgroups", None) is not None
                      else "rlimits instead of cgroups")
            weak = f" [yellow](rootless: {limits}, one uid for all)[/]"
        opted = [n for n, sb in p.sandboxes.items() if sb.backend.weak and n != tier]
        if opted:  # --allow-weak-isolation: functions may ask for it
            weak += f" [bold red](weak tier allowed: {', '.join(opted)})[/]"
        console.print(f"[bold green]dayfly[/] listening on [bold]{url}[/]  "
                      f"data: {settings.data_dir}  isolation: [bold]{tier}[/]{weak}  "
                      f"functions: {len(p.registry.functions)}")
        if p.membership.cluster:
            console.print(f"  cluster [bold]{p.membership.cluster}[/] as node "
                          f"[bold]{p.membership.node_id}[/]: {len(p.membership.peers())} "
                          "node(s) live; `dayfly nodes` lists them")
        if "hello" in p.registry.functions:
            console.print(f"  try: [cyan]curl -s -d '{{\"name\": \"you\"}}' "
                          f"{url}/2015-03-31/functions/hello/invocations[/]")
        console.print(f"  dashboard: [cyan]{url}/ui/[/]  metrics: {url}/metrics")
        if auth.always:
            path = await asyncio.to_thread(p.tokens.bootstrap, settings.data_dir)
            console.print(f"  API tokens required (bound to {host}); "
                          + (f"the first one is in {path}" if path else "`dayfly token ls`"))
        elif p.tokens.ids:
            console.print("  API tokens required (tokens exist); `dayfly token ls` lists them")
        console.print("  Ctrl-C stops dayfly and every instance it started.")

    from ..gateway.auth import Auth
    from ..gateway.fastpath import FastInvoke
    from ..gateway.origin import OriginGuard, Policy

    auth = Auth(FastInvoke(build_app(platform, started), platform), platform)
    # cross-site and DNS-rebinding requests are refused before anything else sees them
    app = OriginGuard(auth, Policy.of(host, allow_hosts, allow_origins), settings.function_s3)
    from ..gateway.routes import HttpFront
    front = HttpFront(app, platform)  # routes and function URLs: their own auth, CORS, limits
    config = uvicorn.Config(front, host=host, port=port, loop="uvloop", http=http, ws="none",
                            lifespan="on", access_log=False, log_level="warning",
                            timeout_graceful_shutdown=5)
    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            platform.records.hang_up()  # live log tails end now, not at the graceful timeout
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled
        Server(config).run(sockets=[listener, function_s3])
