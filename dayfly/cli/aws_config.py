"""Credentials for the tools people already use against the S3 endpoint (the aws CLI, boto3,
rclone, s3cmd...): as an `AWS_*` environment block, or as a named profile in the aws files."""

from __future__ import annotations

import configparser
import os
import shlex
from pathlib import Path
from typing import Any


def env_block(key: dict[str, Any], endpoint: str) -> str:
    """Shell lines for `eval "$(dayfly keys create --env)"` (AWS_ENDPOINT_URL: boto3 >= 1.28,
    the aws CLI >= 1.29/2.13)."""
    values = {"AWS_ACCESS_KEY_ID": key["id"], "AWS_SECRET_ACCESS_KEY": key["secret"],
              "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": key.get("region", "us-east-1"),
              "AWS_REGION": key.get("region", "us-east-1")}
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in values.items())


def files() -> tuple[Path, Path]:
    """The aws CLI's credentials and config files, where it would read them."""
    home = Path.home() / ".aws"
    return (Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", home / "credentials")).expanduser(),
            Path(os.environ.get("AWS_CONFIG_FILE", home / "config")).expanduser())


def write_profile(profile: str, key: dict[str, Any], endpoint: str) -> tuple[Path, Path]:
    """Add (or replace) `profile` in the aws credentials and config files; other profiles are
    kept as they are. The credentials file stays readable by its owner only."""
    creds_path, config_path = files()
    creds = _read(creds_path)
    creds[profile] = {"aws_access_key_id": key["id"], "aws_secret_access_key": key["secret"]}
    _write(creds_path, creds)
    config = _read(config_path)
    section = profile if profile == "default" else f"profile {profile}"
    config[section] = {"region": key.get("region", "us-east-1"), "endpoint_url": endpoint}
    _write(config_path, config)
    return creds_path, config_path


def _read(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read(path)
    return parser


def _write(path: Path, parser: configparser.RawConfigParser) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".dayfly-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        parser.write(f)
    os.replace(tmp, path)
