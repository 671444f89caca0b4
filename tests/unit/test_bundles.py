"""Bundles: content-addressed, unpacked read-only, hostile zips refused."""

import base64
import hashlib
import io
import stat
import zipfile

import pytest

from dayfly.config import Settings
from dayfly.control.bundles import BundleStore
from dayfly.errors import InvalidParameter


@pytest.fixture
def store(tmp_path):
    s = Settings(data_dir=tmp_path)
    s.ensure_dirs()
    return BundleStore(tmp_path)


def zip_of(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for e in entries:
            if isinstance(e, zipfile.ZipInfo):
                zf.writestr(e, b"x")
            else:
                zf.writestr(e[0], e[1])
    return buf.getvalue()


def test_put_stores_and_unpacks_read_only(store):
    data = zip_of([("handler.py", "x = 1\n"), ("pkg/mod.py", "y = 2\n")])
    b = store.put(data)
    assert b.sha256_b64 == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert (b.code_dir / "pkg" / "mod.py").read_text() == "y = 2\n"
    mode = (b.code_dir / "handler.py").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert store.put(data).code_dir == b.code_dir  # same content, same place
    assert store.get(b.hexdigest).zip_path.read_bytes() == data


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil.py", "a/../../evil.py", "C:/x.py"])
def test_paths_outside_the_bundle_are_refused(store, name):
    with pytest.raises(InvalidParameter, match="outside the bundle"):
        store.put(zip_of([(name, "x")]))


def test_symlinks_are_refused(store):
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(InvalidParameter, match="symbolic link"):
        store.put(zip_of([info]))


def test_corrupt_zip_is_refused(store):
    with pytest.raises(InvalidParameter, match="Could not unzip"):
        store.put(b"PK\x03\x04 definitely not a zip")
