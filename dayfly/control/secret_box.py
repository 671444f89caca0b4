"""Sealing secret values at rest: AES-256-GCM under a key in `<data dir>/secrets.key` (0600),
each value bound to its secret's name, so a sealed value moved to another row does not open."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import PlatformError
from ..modes import create_private_once

KEY_FILE = "secrets.key"
VERSION = b"\x01"  # a sealed value: VERSION + key id (8) + nonce (12) + ciphertext and tag
KEY_ID = 8
NONCE = 12


class SecretsKeyError(PlatformError):
    """The secrets key is missing, damaged or not the one the stored secrets were sealed with."""


class SecretBox:
    """Seals and opens secret values with the node's secrets key."""

    def __init__(self, path: Path | str, key: bytes) -> None:
        self.path = path  # where the key came from (named in errors)
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"dayfly secrets key id\0" + key).digest()[:KEY_ID]

    @classmethod
    def open(cls, data_dir: Path, *, must_exist: bool, key: bytes | None = None) -> SecretBox:
        """The data dir's key; created when missing unless `must_exist` (values sealed with it
        are stored: a new key would not open them, so losing it is an error, never a reset).
        A cluster passes `key` (derived from the cluster key) instead: no file is used."""
        if key is not None:
            return cls("the cluster key", key)
        path = data_dir / KEY_FILE
        if not path.exists():
            if must_exist:
                raise SecretsKeyError(
                    f"the secrets in {data_dir / 'dayfly.db'} are sealed with {path}, which is "
                    f"missing. Restore that file (from where dayfly.db came from, or a backup: "
                    f"it is never stored in the database). Without it they cannot be opened; to "
                    f"start without them, delete the rows of the table 'secrets' in dayfly.db")
            _create(path)
        try:
            key = base64.b64decode(path.read_bytes(), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise SecretsKeyError(f"{path} is damaged: it must hold 32 random bytes (base64)")
        return cls(path, key)

    def seal(self, name: str, value: str) -> bytes:
        nonce = secrets.token_bytes(NONCE)
        return VERSION + self.key_id + nonce + self._aead.encrypt(nonce, value.encode(), _aad(name))

    def open_value(self, name: str, sealed: bytes) -> str:
        """The value of secret `name`; a clear SecretsKeyError when it cannot be opened."""
        head, key_id = sealed[:1], sealed[1:1 + KEY_ID]
        if head != VERSION or len(sealed) < 1 + KEY_ID + NONCE + 16:
            raise SecretsKeyError(f"secret {name!r} in dayfly.db is damaged (unknown format)")
        if key_id != self.key_id:
            raise SecretsKeyError(
                f"secret {name!r} was sealed with another secrets key (id {key_id.hex()}) than "
                f"{self.path} (id {self.key_id.hex()}): restore the secrets.key that belongs "
                f"with this dayfly.db")
        nonce = sealed[1 + KEY_ID:1 + KEY_ID + NONCE]
        try:
            plain = self._aead.decrypt(nonce, sealed[1 + KEY_ID + NONCE:], _aad(name))
        except InvalidTag:
            raise SecretsKeyError(f"secret {name!r} in dayfly.db does not open with {self.path}: "
                                  "it was altered, or moved from another secret's row") from None
        return plain.decode()


def _aad(name: str) -> bytes:
    return b"dayfly secret\0" + name.encode()


def _create(path: Path) -> None:
    """A new random key in `path` (0600), created once."""
    create_private_once(path, base64.b64encode(AESGCM.generate_key(bit_length=256)))
