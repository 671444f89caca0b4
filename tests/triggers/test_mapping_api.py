"""The Lambda event source mapping API with boto3: create/list/get/update/delete, bad input
as 400s (never a silent no-op), clean removal, and health when a database goes away."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import httpx
import pytest
from conftest import ALLOW_WEAK
from trigger_helpers import DB, create_mapping, deploy, records, scratch_db, unique, wait_for

SERVER_ARGS = ALLOW_WEAK  # trigger_helpers' recorder writes a host file: process tier
SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path: Path) -> Iterator[DB]:
    with scratch_db(request.param, tmp_path) as d:
        yield d


@pytest.fixture(scope="module")
def fn(server, tmp_path_factory) -> tuple[str, Path]:
    name, out = unique("api"), tmp_path_factory.mktemp("api") / "api.jsonl"
    deploy(server, name, out)
    return name, out


def refused(call, code: str = "InvalidParameterValueException") -> str:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    assert info.value.response["Error"]["Code"] == code, info.value.response
    return info.value.response["Error"]["Message"]


def test_create_list_get_update_delete(server, lam, fn, db: DB):
    name, _ = fn
    t = db.create("orders")
    m = create_mapping(lam, name, db.url(t), BatchSize=10)
    assert m["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert m["State"] == "Enabled" and m["BatchSize"] == 10
    assert m["EventSourceArn"].startswith("arn:dayfly:table:" + db.kind)
    assert m["FunctionArn"].endswith(f":function:{name}")
    assert refused(lambda: create_mapping(lam, name, db.url(t)),
                   "ResourceConflictException").endswith(m["UUID"])
    listed = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert m["UUID"] in [x["UUID"] for x in listed]
    by_arn = lam.list_event_source_mappings(EventSourceArn=m["EventSourceArn"])
    assert [x["UUID"] for x in by_arn["EventSourceMappings"]] == [m["UUID"]]
    raw = httpx.get(f"{server.url}/2015-03-31/event-source-mappings/{m['UUID']}").json()
    assert raw["Health"] == "healthy" or raw["Health"] == "starting"
    up = lam.update_event_source_mapping(UUID=m["UUID"], BatchSize=3, Enabled=False,
                                         MaximumRetryAttempts=5)
    assert (up["BatchSize"], up["State"], up["MaximumRetryAttempts"]) == (3, "Disabled", 5)
    got = lam.get_event_source_mapping(UUID=m["UUID"])
    assert got["State"] == "Disabled" and got["LastModified"] >= m["LastModified"]
    gone = lam.delete_event_source_mapping(UUID=m["UUID"])
    assert gone["State"] == "Deleting"
    refused(lambda: lam.get_event_source_mapping(UUID=m["UUID"]), "ResourceNotFoundException")


def test_removing_the_last_mapping_restores_the_schema(lam, fn, server, db: DB, tmp_path):
    name, _ = fn
    other, other_out = unique("other"), tmp_path / "other.jsonl"
    deploy(server, other, other_out)
    t = db.create("orders")
    before = db.snapshot()
    a = create_mapping(lam, name, db.url(t))
    b = create_mapping(lam, other, db.url(t))
    db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (1)")
    assert wait_for(lambda: records(other_out), 30)
    lam.delete_event_source_mapping(UUID=a["UUID"])
    assert db.snapshot() != before  # the other mapping still reads the table
    db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (2)")
    assert wait_for(lambda: len(records(other_out)) == 2, 30)
    lam.delete_event_source_mapping(UUID=b["UUID"])
    assert db.snapshot() == before


def test_bad_sources_are_refused_at_creation(server, lam, fn, db: DB):
    name, _ = fn
    db.create("nokey", "a TEXT, b TEXT")
    unreachable = ("sqlite:///nonexistent/app.db#t" if db.kind == "sqlite"
                   else "postgresql://postgres@127.0.0.1:1/test#public.t")
    for source, why in ((db.url("missing"), "no table"),
                        (db.url("nokey"), "has no primary key"),
                        (unreachable, "no SQLite database" if db.kind == "sqlite"
                         else "cannot connect"),
                        ("arn:dayfly:table:mysql://h/db#t", "scheme must be"),
                        ("sqlite:///tmp/app.db", "the table is missing")):
        message = refused(lambda s=source: create_mapping(lam, name, s))
        assert why in message, message
    db.create("good")
    # raw HTTP: boto3 itself refuses some of these before sending
    for params, why in (({"BatchSize": 20000}, "BatchSize"),
                        ({"BatchSize": 0}, "BatchSize"),
                        ({"MaximumRecordAgeInSeconds": 30}, "MaximumRecordAgeInSeconds"),
                        ({"MaximumRetryAttempts": -2}, "MaximumRetryAttempts"),
                        ({"MaximumBatchingWindowInSeconds": 301}, "MaximumBatchingWindow"),
                        ({"StartingPosition": "AT_TIMESTAMP"}, "not supported"),
                        ({"ParallelizationFactor": 2}, "ParallelizationFactor must be 1"),
                        ({"StreamViewType": "ALL"}, "StreamViewType must be one of"),
                        ({"FunctionResponseTypes": ["Nope"]}, "ReportBatchItemFailures"),
                        ({"DestinationConfig": {"OnFailure": {"Destination": "nosuchfn"}}},
                         "destination does not exist")):
        r = httpx.post(f"{server.url}/2015-03-31/event-source-mappings/", json={
            "FunctionName": name, "EventSourceArn": db.url("good"), **params})
        assert r.status_code == 400, r.text
        assert r.json()["__type"] == "InvalidParameterValueException"
        assert why in r.json()["message"], r.json()
    refused(lambda: create_mapping(lam, "no-such-function", db.url("good")),
            "ResourceNotFoundException")
    assert lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"] == []


def test_a_vanished_sqlite_database_is_shown_unhealthy_then_recovers(server, lam, fn, tmp_path):
    name, out = fn
    with scratch_db("sqlite", tmp_path) as db:
        t = db.create("orders")
        m = create_mapping(lam, name, db.url(t))
        path = db.base[len("sqlite://"):]
        url = f"{server.url}/2015-03-31/event-source-mappings/{m['UUID']}"
        assert wait_for(lambda: httpx.get(url).json()["Health"] == "healthy", 20)
        os.rename(path, path + ".away")
        health = wait_for(lambda: (h := httpx.get(url).json()["Health"]).startswith(
            "unhealthy") and h, 20)
        assert health and "removed or replaced" in health, health
        os.rename(path + ".away", path)
        assert wait_for(lambda: httpx.get(url).json()["Health"] == "healthy", 30)
        before = len(records(out))
        db.sql(f"INSERT INTO {t} (id) VALUES (1)")
        assert wait_for(lambda: len(records(out)) > before, 30)
        lam.delete_event_source_mapping(UUID=m["UUID"])


def test_postgres_connections_lost_are_reopened_without_missing_changes(server, lam, tmp_path):
    with scratch_db("postgresql", tmp_path) as db:
        name, out = unique("pgloss"), tmp_path / "pgloss.jsonl"
        deploy(server, name, out)
        t = db.create("orders")
        m = create_mapping(lam, name, db.url(t))
        db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (1)")
        assert wait_for(lambda: records(out), 30)
        db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name "
               "= 'dayfly' AND pid <> pg_backend_pid()")
        for i in range(2, 6):
            db.sql(f"INSERT INTO {db.ns}{t} (id) VALUES (?)", i)
        assert wait_for(lambda: len(records(out)) >= 5, 30)
        assert [r["dynamodb"]["Keys"]["id"]["N"] for r in records(out)] == ["1", "2", "3", "4",
                                                                             "5"]
        lam.delete_event_source_mapping(UUID=m["UUID"])


def test_a_postgres_role_without_privileges_is_refused(lam, fn, tmp_path):
    name, _ = fn
    with scratch_db("postgresql", tmp_path) as db:
        t = db.create("orders")
        role = f"dft_role_{unique('r').split('-')[1]}"
        db.sql(f"CREATE ROLE {role} LOGIN")
        try:
            db.sql(f"GRANT USAGE ON SCHEMA {db.ns.rstrip('.')} TO {role}")
            db.sql(f"GRANT SELECT ON {db.ns}{t} TO {role}")
            source = db.url(t).replace("://postgres@", f"://{role}@").replace(
                "://root@", f"://{role}@")
            message = refused(lambda: create_mapping(lam, name, source))
            assert f"role {role} may not capture" in message and "lacks TRIGGER" in message
        finally:
            db.sql(f"DROP OWNED BY {role}")
            db.sql(f"DROP ROLE {role}")
