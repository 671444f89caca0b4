"""One contract over both blob backends: files (one node) and a JetStream object store with a
local cache (cluster). Two JetStream stores on two NATS connections play two nodes. Then the
code-sharing seam: a bundle and a dependency set stored by one node, fetched once by another.

NATS is the machine's (127.0.0.1:4222, or DAYFLY_TEST_NATS); each test uses its own object
store, deleted afterwards; when NATS is unreachable the JetStream cases skip (fail in strict
mode, tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import nats
import pytest
from conftest import make_zip

from dayfly.control.bundles import BundleStore
from dayfly.control.deps import DepsInstaller, deps_key
from dayfly.control.shared_code import CodeMissing, JetStreamCode, OnDisk
from dayfly.stores import blobs, checksums, sse
from dayfly.stores.blobs import BlobStore
from dayfly.stores.jsblobs import JetStreamBlobStore
from dayfly.stores.jsobjects import CHUNK, WINDOW, Objects
from dayfly.stores.s3errors import S3Error

NATS_URL = os.environ.get("DAYFLY_TEST_NATS", "nats://127.0.0.1:4222")

Node = Callable[[Path], Awaitable[BlobStore]]


async def connect_or_skip() -> nats.NATS:
    """A connection to the test NATS; the test skips (fails in strict mode) without one."""
    url = urlsplit(NATS_URL)
    try:  # nats-py retries a refused first connect for a long time: probe the port first
        _, w = await asyncio.wait_for(asyncio.open_connection(url.hostname, url.port or 4222), 2)
        w.close()
        return await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=1)
    except Exception as exc:
        pytest.skip(f"NATS unreachable at {NATS_URL}: {exc or type(exc).__name__}")


async def _body(data: bytes, piece: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), piece):
        yield data[i:i + piece]


async def read(store: BlobStore, blob_id: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([c async for c in await store.open(blob_id, start, end)])


@pytest.fixture
async def jetstream() -> AsyncIterator[Node]:
    """Makes 'nodes': JetStream blob stores, each on its own NATS connection, sharing one
    object store unique to this test (deleted afterwards)."""
    first = await connect_or_skip()
    bucket = f"dayfly_t{secrets.token_hex(4)}_objects"
    conns, stores = [first], []

    async def node(root: Path) -> BlobStore:
        nc = first if not stores else await nats.connect(NATS_URL)
        if nc is not first:
            conns.append(nc)
        store = JetStreamBlobStore(root, nc, bucket)
        await store.start()
        stores.append(store)
        return store

    yield node
    for s in stores:
        await s.close()
    await Objects(first, bucket).drop()
    for nc in conns:
        await nc.close()


@pytest.fixture(params=["files", "jetstream"])
def node(request: pytest.FixtureRequest) -> Node:
    if request.param == "files":
        async def files(root: Path) -> BlobStore:
            return BlobStore(root)
        return files
    return request.getfixturevalue("jetstream")


DATA = os.urandom(3 * 1024 * 1024 + 17)  # several chunks and a ragged end


async def test_write_then_read_whole_and_ranges(node: Node, tmp_path: Path) -> None:
    store = await node(tmp_path / "n1")
    blob = await store.write(_body(DATA), limit=len(DATA))
    assert (blob.size, blob.md5) == (len(DATA), hashlib.md5(DATA).digest())
    assert await read(store, blob.id) == DATA
    n = len(DATA)
    for start, end in [(0, 0), (5, 5), (0, 99), (524_287, 524_288), (1_000_000, None),
                       (n - 1, n - 1), (n - 10, None), (0, n - 1)]:
        want = DATA[start:] if end is None else DATA[start:end + 1]
        assert await read(store, blob.id, start, end) == want, (start, end)


async def test_empty_blob(node: Node, tmp_path: Path) -> None:
    store = await node(tmp_path / "n1")
    blob = await store.write(_body(b""), limit=10)
    assert blob.size == 0 and await read(store, blob.id) == b""


async def test_limit_refuses_and_leaves_nothing(node: Node, tmp_path: Path) -> None:
    store = await node(tmp_path / "n1")
    with pytest.raises(S3Error) as e:
        await store.write(_body(b"x" * 1000), limit=999)
    assert e.value.code == "EntityTooLarge"
    assert not [p for p in (tmp_path / "n1").rglob("*") if p.is_file()]


async def test_write_fd_concat_copy_range(node: Node, tmp_path: Path) -> None:
    store = await node(tmp_path / "n1")
    src = tmp_path / "body"
    src.write_bytes(DATA)
    fd = os.open(src, os.O_RDONLY)
    try:
        a = await store.write_fd(fd, len(DATA), limit=len(DATA))
    finally:
        os.close(fd)
    b = await store.write(_body(b"tail!"), limit=100)
    both = await store.concat([a.id, b.id], algorithms=["crc32"])
    assert await read(store, both.id) == DATA + b"tail!"
    assert both.md5 == hashlib.md5(DATA + b"tail!").digest() and "crc32" in both.digests
    part = await store.copy_range(a.id, 1000, 600_000)
    assert await read(store, part.id) == DATA[1000:600_001]


async def test_link_and_remove_from_worker_threads(node: Node, tmp_path: Path) -> None:
    store = await node(tmp_path / "n1")
    blob = await store.write(_body(DATA), limit=len(DATA))
    copy = await asyncio.to_thread(store.link, blob.id)
    assert copy != blob.id
    await asyncio.to_thread(store.remove, blob.id)
    with pytest.raises(FileNotFoundError):
        await store.open(blob.id)
    assert await read(store, copy) == DATA  # the copy outlives the original


async def test_streamed_writer_from_a_thread(node: Node, tmp_path: Path) -> None:
    store = await node(tmp_path / "n1")

    def fill() -> object:
        w = store.writer()
        w.write(DATA[:1000])
        w.sync()
        w.write(DATA[1000:])
        return w.finish()
    blob = await asyncio.to_thread(fill)
    assert await read(store, blob.id) == DATA  # type: ignore[attr-defined]


LARGE = os.urandom(40 * 1024 * 1024 + 4097)  # past FLUSH and SYNC_EVERY: the pipelined path


async def _ragged(data: bytes) -> AsyncIterator[bytes | memoryview]:
    """Receives of uneven sizes, some as views (what the aws-chunked decoder passes on)."""
    view, i, n = memoryview(data), 0, 0
    while i < len(data):
        size = (1, 300_000, 65_536, 2_000_000, 7)[n % 5]
        yield view[i:i + size] if n % 2 else bytes(view[i:i + size])
        i, n = i + size, n + 1


def _lanes() -> list[str]:
    """The lane threads still alive once they had 10 s to end; then no lane is counted."""
    left = [t for t in threading.enumerate() if t.name.startswith("dayfly-blob-")]
    for t in left:
        t.join(10)
    alive = [t.name for t in left if t.is_alive()]
    assert alive or blobs.Lane.running == 0, blobs.Lane.running
    return alive


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_a_large_body_hashed_encrypted_and_written_in_order(node: Node,
                                                                   tmp_path: Path) -> None:
    store = await node(tmp_path / "n1")
    key, nonce = os.urandom(32), sse.new_nonce()
    algs = ["crc32", "crc32c", "sha1", "sha256", "crc64nvme"]
    blob = await store.write(_ragged(LARGE), limit=len(LARGE), algorithms=algs,
                             encrypt=sse.encryptor(key, nonce))
    assert (blob.size, blob.md5) == (len(LARGE), hashlib.md5(LARGE).digest())
    for alg in algs:
        d = checksums.new(alg)
        d.update(LARGE)
        assert blob.digests[alg] == d.digest(), alg
    stored = await read(store, blob.id)
    assert stored != LARGE[:len(stored)]
    plain = b"".join([c async for c in sse.decrypting(_body(stored), key, nonce, 0)])
    assert plain == LARGE
    assert not _lanes()


async def test_past_the_lane_budget_a_large_body_is_written_the_slower_way(
        node: Node, tmp_path: Path) -> None:
    """With every lane taken (many large uploads at once), a large body is hashed and written
    a batch at a time in the shared executor: the same blob, no thread of its own."""
    store = await node(tmp_path / "n1")
    assert blobs.Lane.reserve(blobs.LANES) and not blobs.Lane.reserve(1)
    try:
        blob = await store.write(_ragged(LARGE), limit=len(LARGE), algorithms=["sha256"])
        assert not [t for t in threading.enumerate() if t.name.startswith("dayfly-blob-")]
    finally:
        blobs.Lane.release(blobs.LANES)
    assert (blob.size, blob.md5) == (len(LARGE), hashlib.md5(LARGE).digest())
    assert blob.digests["sha256"] == hashlib.sha256(LARGE).digest()
    assert await read(store, blob.id) == LARGE
    assert not _lanes()


async def test_a_body_failing_midway_leaves_no_file_and_no_thread(node: Node,
                                                                   tmp_path: Path) -> None:
    store = await node(tmp_path / "n1")

    async def broken() -> AsyncIterator[bytes]:
        async for chunk in _body(LARGE[:20 * 1024 * 1024], 1 << 20):
            yield chunk
        raise ConnectionResetError("the client went away")
    with pytest.raises(ConnectionResetError):
        await store.write(broken(), limit=len(LARGE))
    assert not _files(tmp_path / "n1") and not _lanes()


async def test_a_failing_write_ends_the_upload(node: Node, tmp_path: Path) -> None:
    """An error in the writing thread (here the transform; on a disk: ENOSPC) reaches the
    caller, and the rest of the body is not written."""
    store = await node(tmp_path / "n1")
    calls = 0

    def encrypt(data: bytes | bytearray | memoryview) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise OSError(28, "No space left on device")
        return bytes(data)
    with pytest.raises(OSError, match="No space"):
        await store.write(_body(LARGE, 1 << 20), limit=len(LARGE), encrypt=encrypt)
    assert calls == 5 and not _files(tmp_path / "n1") and not _lanes()


async def test_a_cancelled_write_leaves_no_file_and_no_thread(node: Node,
                                                              tmp_path: Path) -> None:
    store = await node(tmp_path / "n1")
    halfway, never = asyncio.Event(), asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        async for chunk in _body(LARGE[:10 * 1024 * 1024], 1 << 20):
            yield chunk
        halfway.set()
        await never.wait()
        yield b"never"
    task = asyncio.ensure_future(store.write(stalled(), limit=len(LARGE)))
    await halfway.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _files(tmp_path / "n1") and not _lanes()


def _open_fds_to(path: Path) -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return n


async def test_a_reader_gone_early_closes_the_file(node: Node, tmp_path: Path) -> None:
    """GET reads the next chunk ahead: a reader that stops after one chunk (a client gone)
    leaves no read running and no file open."""
    store = await node(tmp_path / "n1")
    blob = await store.write(_body(LARGE), limit=len(LARGE))
    path = await store.local(blob.id)
    chunks = await store.open(blob.id, 10, None)
    first = await chunks.__anext__()
    assert first == LARGE[10:10 + len(first)] and _open_fds_to(path) == 1
    await chunks.aclose()  # type: ignore[attr-defined]
    assert _open_fds_to(path) == 0
    whole = await read(store, blob.id, 5, len(LARGE) - 6)
    assert whole == LARGE[5:-5]


# -- two nodes over JetStream --------------------------------------------------------------


async def test_a_blob_written_on_one_node_is_read_on_another_and_cached_once(
        jetstream: Node, tmp_path: Path) -> None:
    one = await jetstream(tmp_path / "n1")
    two = await jetstream(tmp_path / "n2")
    assert isinstance(two, JetStreamBlobStore)
    blob = await one.write(_body(DATA), limit=len(DATA))
    assert not two.path(blob.id).exists()
    assert await read(two, blob.id, 10, 20) == DATA[10:21]  # a range fetches the whole blob
    assert two.fetches == 1 and two.path(blob.id).read_bytes() == DATA
    reads = await asyncio.gather(*(read(two, blob.id) for _ in range(5)))
    assert reads == [DATA] * 5 and two.fetches == 1  # served from its own disk


async def test_concurrent_first_reads_share_one_fetch(jetstream: Node, tmp_path: Path) -> None:
    one = await jetstream(tmp_path / "n1")
    two = await jetstream(tmp_path / "n2")
    assert isinstance(two, JetStreamBlobStore)
    blob = await one.write(_body(DATA), limit=len(DATA))
    paths = await asyncio.gather(*(two.local(blob.id) for _ in range(4)))
    assert len(set(paths)) == 1 and two.fetches == 1


async def test_a_put_is_in_the_shared_store_when_write_returns(jetstream: Node,
                                                               tmp_path: Path) -> None:
    one = await jetstream(tmp_path / "n1")
    assert isinstance(one, JetStreamBlobStore)
    blob = await one.write(_body(DATA), limit=len(DATA))
    other = await nats.connect(NATS_URL)
    try:
        info = await Objects(other, one.objects.bucket).info(blob.id)
    finally:
        await other.close()
    assert info is not None and (info.size, info.sha256) == (len(DATA), hashlib.sha256(DATA).digest())


async def test_a_corrupted_cache_copy_is_detected_and_fetched_again(jetstream: Node,
                                                                   tmp_path: Path) -> None:
    one = await jetstream(tmp_path / "n1")
    two = await jetstream(tmp_path / "n2")
    assert isinstance(two, JetStreamBlobStore)
    blob = await one.write(_body(DATA), limit=len(DATA))
    path = await two.local(blob.id)
    with open(path, "r+b") as f:  # same size, one byte flipped
        f.seek(12345)
        f.write(bytes([DATA[12345] ^ 0xFF]))
    assert await read(two, blob.id) == DATA
    assert two.fetches == 2 and path.read_bytes() == DATA
    # a node started over an old cache checks a copy before it trusts it
    with open(path, "r+b") as f:
        f.write(b"\0" * 100)
    three = await jetstream(tmp_path / "n2")
    assert isinstance(three, JetStreamBlobStore)
    assert await read(three, blob.id, 0, 99) == DATA[:100] and three.fetches == 1
    # an intact copy is checked, not fetched
    four = await jetstream(tmp_path / "n2")
    assert isinstance(four, JetStreamBlobStore)
    assert await read(four, blob.id) == DATA and four.fetches == 0


async def test_a_removed_blob_leaves_every_node(jetstream: Node, tmp_path: Path) -> None:
    one = await jetstream(tmp_path / "n1")
    two = await jetstream(tmp_path / "n2")
    assert isinstance(two, JetStreamBlobStore)
    blob = await one.write(_body(DATA), limit=len(DATA))
    kept = await one.write(_body(b"kept"), limit=10)
    path = await two.local(blob.id)
    await asyncio.to_thread(one.remove, blob.id)
    three = await jetstream(tmp_path / "n3")
    with pytest.raises(FileNotFoundError):
        await three.open(blob.id)
    for _ in range(200):  # node two drops its copy when the deletion reaches it
        if not path.exists():
            break
        await asyncio.sleep(0.01)
    assert not path.exists()
    assert await read(two, kept.id) == b"kept"


# -- code bundles and dependencies shared between nodes -------------------------------------


def _data_dir(root: Path) -> Path:
    for d in ("bundles", "code", "deps", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
async def code_nodes(tmp_path: Path) -> AsyncIterator[Callable[[str], Awaitable[tuple]]]:
    """Makes 'nodes' (BundleStore, DepsInstaller, JetStreamCode) on their own NATS
    connections, sharing one code object store unique to this test (deleted afterwards)."""
    first = await connect_or_skip()
    bucket = f"dayfly_t{secrets.token_hex(4)}_code"
    conns = [first]

    async def node(name: str) -> tuple[BundleStore, DepsInstaller, JetStreamCode]:
        nc = first if len(conns) == 1 and name == "n1" else await nats.connect(NATS_URL)
        if nc is not first:
            conns.append(nc)
        shared = JetStreamCode(nc, bucket)
        await shared.start()
        root = _data_dir(tmp_path / name)
        return BundleStore(root, shared), DepsInstaller(root, shared), shared

    yield node
    await Objects(first, bucket).drop()
    for nc in conns:
        await nc.close()


BUNDLE = make_zip({"app.py": "def handler(event, context):\n    return 42\n"})
REQS = "somepkg==1.0\n"


def _spec(name: str, code_hex: str, deps: str | None) -> SimpleNamespace:
    return SimpleNamespace(name=name, code_dir=f"/nowhere/code/{code_hex}",
                           deps_dir=f"/nowhere/deps/{deps}" if deps else None, layers=())


async def test_a_bundle_deployed_on_one_node_is_fetched_once_by_another(code_nodes) -> None:
    b1, d1, _ = await code_nodes("n1")
    b2, d2, shared2 = await code_nodes("n2")
    bundle = await b1.store(BUNDLE)  # the deploy: shared before it returns
    key = deps_key(REQS)  # an installed dependency set on node one (pip itself not needed)
    (d1.root / key / "somepkg").mkdir(parents=True)
    (d1.root / key / "somepkg" / "__init__.py").write_text("VALUE = 7\n")
    assert (await d1.install(REQS))[0] == key  # found on disk, shared
    assert not (b2.code / bundle.hexdigest).exists()
    on_disk = OnDisk(b2, d2)
    spec = _spec("f", bundle.hexdigest, key)
    await asyncio.gather(*(on_disk(spec) for _ in range(4)))  # concurrent cold starts
    await on_disk(spec)
    assert shared2.fetches == {f"code/{bundle.hexdigest}": 1, f"deps/{key}": 1}
    assert (b2.code / bundle.hexdigest / "app.py").read_text().endswith("return 42\n")
    assert (d2.root / key / "somepkg" / "__init__.py").read_text() == "VALUE = 7\n"
    got = b2.get(bundle.hexdigest)  # the zip too (downloads, redeploys)
    assert got is not None and (got.sha256_b64, got.size) == (bundle.sha256_b64, bundle.size)


async def test_a_shared_bundle_that_does_not_match_its_hash_is_refused(code_nodes,
                                                                      tmp_path: Path) -> None:
    _, _, shared1 = await code_nodes("n1")
    b2, _, _ = await code_nodes("n2")
    claimed = hashlib.sha256(b"some other bundle").hexdigest()
    other = tmp_path / "other.zip"
    other.write_bytes(make_zip({"app.py": "evil = 1\n"}))
    await shared1.put(f"code/{claimed}", other)  # a wrong object under a bundle's name
    with pytest.raises(ValueError, match="does not match"):
        await b2.ensure(claimed)
    assert not (b2.code / claimed).exists()
    assert not list(b2.tmp.iterdir())


async def test_code_on_no_node_fails_the_start(code_nodes) -> None:
    b2, d2, shared2 = await code_nodes("n2")
    with pytest.raises(CodeMissing):
        await OnDisk(b2, d2)(_spec("f", "0" * 64, None))
    assert not shared2.fetches


async def test_one_node_shares_nothing(tmp_path: Path) -> None:
    root = _data_dir(tmp_path / "solo")
    bundles, deps = BundleStore(root), DepsInstaller(root)
    bundle = await bundles.store(BUNDLE)
    await OnDisk(bundles, deps)(_spec("f", bundle.hexdigest, None))  # on disk: a stat
    assert not await bundles.ensure("0" * 64)
    assert not await deps.ensure("0" * 32)
    assert not list(bundles.tmp.iterdir())


async def test_a_blob_of_many_fetch_batches_crosses_nodes(jetstream: Node, tmp_path: Path) -> None:
    one = await jetstream(tmp_path / "n1")
    two = await jetstream(tmp_path / "n2")
    big = os.urandom(CHUNK * WINDOW * 2 + 12345)  # three fetch batches, the last one ragged
    blob = await one.write(_body(big, 1 << 20), limit=len(big))
    assert await read(two, blob.id, len(big) - 5) == big[-5:]
    assert hashlib.sha256(await read(two, blob.id)).digest() == hashlib.sha256(big).digest()


async def test_the_first_start_on_the_deploying_node_shares_what_it_stored(code_nodes) -> None:
    b1, d1, shared1 = await code_nodes("n1")
    b2, d2, shared2 = await code_nodes("n2")
    bundle = await asyncio.to_thread(b1.put, BUNDLE)  # stored on node one only
    key = deps_key(REQS)
    (d1.root / key / "somepkg").mkdir(parents=True)
    (d1.root / key / "somepkg" / "__init__.py").write_text("VALUE = 8\n")
    spec = _spec("f", bundle.hexdigest, key)
    assert not await shared1.has(f"code/{bundle.hexdigest}")
    await OnDisk(b1, d1)(spec)  # e.g. the deploy's throwaway instance
    assert await shared1.has(f"code/{bundle.hexdigest}") and await shared1.has(f"deps/{key}")
    await OnDisk(b2, d2)(spec)
    assert shared2.fetches == {f"code/{bundle.hexdigest}": 1, f"deps/{key}": 1}
    assert (d2.root / key / "somepkg" / "__init__.py").read_text() == "VALUE = 8\n"
    assert not shared1.fetches
