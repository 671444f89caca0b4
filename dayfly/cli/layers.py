"""`dayfly layers ls|publish|versions|rm`: Lambda layers (use them with layers = ["name:N"])."""

from __future__ import annotations

import base64
from pathlib import Path

import click

from .client import Client, with_client
from .output import console, json_option, note, print_json, table
from .package import zip_dir

L = "/2018-10-31/layers"


@click.group()
def layers() -> None:
    """Manage layers: zips mounted read-only under /opt (their python/ folder is importable)."""


@layers.command("ls")
@json_option
@with_client
def layers_ls(client: Client, as_json: bool) -> None:
    """List layers and their latest version."""
    data = client.json("GET", L, params={"MaxItems": 1000})
    if as_json:
        print_json(data)
        return
    t = table("name", "latest", "runtimes", "~description")
    for x in data["Layers"]:
        v = x["LatestMatchingVersion"]
        t.add_row(x["LayerName"], str(v["Version"]), ", ".join(v["CompatibleRuntimes"]) or "-",
                  v["Description"])
    console().print(t)


@layers.command("publish")
@click.argument("name")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--description", default="", help="At most 256 characters.")
@click.option("--runtime", "runtimes", multiple=True, help="A compatible runtime (repeatable).")
@json_option
@with_client
def layers_publish(client: Client, name: str, source: Path, description: str,
                   runtimes: tuple[str, ...], as_json: bool) -> None:
    """Publish SOURCE (a folder, or a .zip) as the next version of layer NAME."""
    data = source.read_bytes() if source.is_file() else zip_dir(source)
    body = {"Content": {"ZipFile": base64.b64encode(data).decode()}, "Description": description,
            "CompatibleRuntimes": list(runtimes)}
    out = client.json("POST", f"{L}/{name}/versions", json=body, timeout=300)
    if as_json:
        print_json(out)
        return
    note(f"published {name}:{out['Version']} ({out['Content']['CodeSize']} bytes); "
         f'use it with layers = ["{name}:{out["Version"]}"] in dayfly.toml')


@layers.command("versions")
@click.argument("name")
@json_option
@with_client
def layers_versions(client: Client, name: str, as_json: bool) -> None:
    """List the versions of layer NAME, newest first."""
    data = client.json("GET", f"{L}/{name}/versions", params={"MaxItems": 1000})
    if as_json:
        print_json(data)
        return
    t = table("version", "created", "runtimes", "~arn")
    for v in data["LayerVersions"]:
        t.add_row(str(v["Version"]), v["CreatedDate"], ", ".join(v["CompatibleRuntimes"]) or "-",
                  v["LayerVersionArn"])
    console().print(t)


@layers.command("rm")
@click.argument("name")
@click.argument("version", type=int)
@with_client
def layers_rm(client: Client, name: str, version: int) -> None:
    """Delete version VERSION of layer NAME (functions using it keep their copy)."""
    client.request("DELETE", f"{L}/{name}/versions/{version}")
    note(f"layer version {name}:{version} deleted")
