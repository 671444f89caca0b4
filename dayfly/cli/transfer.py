"""`dayfly upload` and `dayfly download`: bulk copies to and from the built-in object store,
with a progress bar (through the same HTTP API as the dashboard)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from .client import Client, CliError, with_client
from .output import console, note


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), console=console(stderr=True),
                    disable=not console(stderr=True).is_terminal)


def _files(paths: tuple[Path, ...]) -> list[tuple[Path, str]]:
    """(file, key relative to what was named) for every file under the given paths."""
    out = []
    for p in paths:
        if p.is_dir():
            out += [(f, f.relative_to(p).as_posix()) for f in sorted(p.rglob("*")) if f.is_file()]
        elif p.is_file():
            out.append((p, p.name))
        else:
            raise click.UsageError(f"{p} is neither a file nor a folder")
    return out


@click.command()
@click.argument("bucket")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--prefix", default="", help="Key prefix for every uploaded object (e.g. 'in/').")
@with_client
def upload(client: Client, bucket: str, paths: tuple[Path, ...], prefix: str) -> None:
    """Upload files (folders recursively) into BUCKET; bucket triggers fire as for S3 PUTs."""
    files = _files(paths)
    total = sum(f.stat().st_size for f, _ in files)
    with _progress() as bar:
        task = bar.add_task(f"uploading {len(files)} file(s) to {bucket}", total=total)
        for f, rel in files:
            key = prefix + rel
            client.request("PUT", f"/dayfly/v1/buckets/{quote(bucket)}/objects/{quote(key)}",
                           content=f.read_bytes())
            bar.advance(task, f.stat().st_size)
    note(f"uploaded {len(files)} file(s), {total} bytes, to {bucket}/{prefix}")


@click.command()
@click.argument("bucket")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--prefix", default="", help="Only objects whose key starts with this.")
@with_client
def download(client: Client, bucket: str, dest: Path, prefix: str) -> None:
    """Download every object of BUCKET (under --prefix) into the folder DEST."""
    objects, after = [], ""
    while True:
        page = client.json("GET", f"/dayfly/v1/buckets/{quote(bucket)}/objects",
                           params={"prefix": prefix, "after": after, "limit": 1000})
        objects += page["objects"]
        if not page["truncated"] or not page["objects"]:
            break
        after = page["objects"][-1]["key"]
    total = sum(o["size"] for o in objects)
    root = dest.resolve()
    with _progress() as bar:
        task = bar.add_task(f"downloading {len(objects)} object(s) from {bucket}", total=total)
        for o in objects:
            target = (root / o["key"]).resolve()
            if root not in target.parents:
                raise CliError(f"object key {o['key']!r} would land outside {dest}; not written")
            target.parent.mkdir(parents=True, exist_ok=True)
            r = client.request("GET", f"/dayfly/v1/buckets/{quote(bucket)}/objects/"
                                      f"{quote(o['key'])}")
            target.write_bytes(r.content)
            bar.advance(task, o["size"])
    note(f"downloaded {len(objects)} object(s), {total} bytes, into {dest}")
