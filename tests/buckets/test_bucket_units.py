"""The pieces of bucket triggers in-process: manifest `buckets`, rule matching, webhook bodies,
function keys and scopes, the in-flight chain registry, and the router's queued events."""

from __future__ import annotations

import pytest
from pg_helpers import BACKENDS, open_database

from dayfly.control.function_keys import FunctionKeys, validate_buckets
from dayfly.control.manifest import parse
from dayfly.control.notifications import NotificationStore, make_rule, normalize_events
from dayfly.errors import InvalidParameter, InvalidRequestContent
from dayfly.triggers.causes import InFlight
from dayfly.triggers.webhook import records_of
from dayfly.types import FunctionSpec, InvokeRequest, InvokeResult, Limits


def test_manifest_buckets():
    m = parse('buckets = ["photos:read", "thumbs:write", "logs:readwrite", "photos:write"]')
    assert m.buckets == ["logs:readwrite", "photos:readwrite", "thumbs:write"]
    for bad in ('["photos"]', '["photos:admin"]', '["Bad_Name:read"]', '["ab:read"]', '"x:read"'):
        with pytest.raises(InvalidParameter, match="buckets"):
            parse(f"buckets = {bad}")
    assert validate_buckets([]) == []


def test_rules_match_events_and_keys():
    r = make_rule("arn:aws:lambda:us-east-1:000000000000:function:fn:live", "created",
                  "img/", ".jpg")
    assert (r.function, r.qualifier, r.events) == ("fn", "live", ("s3:ObjectCreated:*",))
    assert r.matches("ObjectCreated:Put", "img/a.jpg")
    assert r.matches("s3:ObjectCreated:CompleteMultipartUpload", "img/a.jpg")
    assert not r.matches("ObjectRemoved:Delete", "img/a.jpg")
    assert not r.matches("ObjectCreated:Put", "img/a.png")
    assert not r.matches("ObjectCreated:Put", "doc/a.jpg")
    put = make_rule("fn", ["s3:ObjectCreated:Put"])
    assert put.matches("ObjectCreated:Put", "x") and not put.matches("ObjectCreated:Copy", "x")
    assert normalize_events("all") == ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
    for bad in ([], "s3:ObjectRestore:*", [3]):
        with pytest.raises(InvalidParameter):
            normalize_events(bad)
    with pytest.raises(InvalidParameter):
        make_rule("not a function!", "created")


def test_webhook_bodies():
    minio = records_of({"EventName": "s3:ObjectRemoved:Delete", "Key": "b/dir/a b"})
    assert minio[0]["eventName"] == "ObjectRemoved:Delete"
    assert minio[0]["s3"]["bucket"]["name"] == "b"
    assert minio[0]["s3"]["object"]["key"] == "dir/a+b"
    aws = records_of({"Records": [{"eventName": "s3:ObjectCreated:Put",
                                   "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]})
    assert aws[0]["eventName"] == "ObjectCreated:Put"
    assert records_of({"Event": "s3:TestEvent"}) == []
    with pytest.raises(InvalidRequestContent, match=r"Records\[0\]\.s3\.object\.key"):
        records_of({"Records": [{"eventName": "x", "s3": {"bucket": {"name": "b"}}}]})


def test_function_keys_are_derived_and_scoped(tmp_path):
    declared = {("fn", "$LATEST"): ["in:read", "out:write"]}
    keys = FunctionKeys(tmp_path, lambda n, v: declared.get((n, v)))
    key_id, secret = keys.credentials("fn", "$LATEST")
    assert key_id.startswith("DFN") and len(key_id) == 20
    again = FunctionKeys(tmp_path, lambda n, v: declared.get((n, v)))
    assert again.credentials("fn", "$LATEST") == (key_id, secret)  # same master, same key
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    scope = keys.scope(key_id)
    assert scope is not None and scope.allows("in", "read") and not scope.allows("in", "write")
    assert scope.allows("out", "write") and not scope.allows("other", "read")
    assert keys.secret(key_id) == secret and keys.function_of(key_id) == "fn"
    assert keys.secret("DFNUNKNOWN") is None and keys.scope("DFOPERATORKEY") is None
    other_id, _ = keys.credentials("fn", "1")  # version 1 declares nothing
    assert other_id != key_id and keys.secret(other_id) is None
    declared.clear()  # the function is gone: its key stops working at once
    assert keys.secret(key_id) is None
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    assert FunctionKeys(fresh, lambda n, v: ["a:read"]).credentials("fn", "$LATEST")[1] != secret


def _spec(name: str) -> FunctionSpec:
    return FunctionSpec(name=name, version="$LATEST", revision="r", arn="a", handler="h.h",
                        code_dir="/", limits=Limits(timeout_s=1))


def test_in_flight_chains():
    inflight = InFlight()
    spec = _spec("fn")
    short = InvokeRequest("a", b"", "arn", chain=["x"])
    long = InvokeRequest("b", b"", "arn", chain=["x", "y", "fn"])
    inflight.before_invoke(spec, short)
    inflight.before_invoke(spec, long)
    assert inflight.chain("fn") == ["x", "y", "fn"] and inflight.chain("other") == []
    inflight.after_invoke(spec, long, InvokeResult(b""), 0, 0)
    assert inflight.chain("fn") == ["x"]
    inflight.after_throttle(spec, short)
    assert inflight.chain("fn") == []


@pytest.mark.parametrize("backend", BACKENDS)
async def test_notification_store_round_trip(tmp_path, backend):
    with open_database(backend, tmp_path) as db:
        store = NotificationStore(db)
        await store.put("local", "photos", [make_rule("fn", "created", rule_id="a")])
        await store.add("minio", "media", make_rule("fn", "removed", rule_id="b"))
        with pytest.raises(InvalidParameter):
            await store.put("local", "x", [make_rule("fn", "all", rule_id="dup")] * 2)
        again = NotificationStore(db)
        again.load()
        assert [r.id for r in again.rules("local", "photos")] == ["a"]
        assert again.listing(source="minio")[0]["bucket"] == "media"
        again.prune_local({"other"})
        assert again.rules("local", "photos") == () and again.rules("minio", "media")
        await again.forget("minio")
        again.load()
        assert again.listing() == []
