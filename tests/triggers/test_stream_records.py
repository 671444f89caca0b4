"""DynamoDB-Streams record shapes: typed attribute values and images per StreamViewType."""

from __future__ import annotations

from decimal import Decimal

import pytest
from botocore.utils import ArnParser

from dayfly.errors import InvalidParameter
from dayfly.triggers.tables.records import attribute, failure_record, stream_arn, stream_record
from dayfly.triggers.tables.source import Change, parse_table_url


def test_typed_attribute_values():
    assert attribute("x") == {"S": "x"}
    assert attribute(3) == {"N": "3"}
    assert attribute(Decimal("1.50")) == {"N": "1.50"}
    assert attribute(0.25) == {"N": "0.25"}
    assert attribute(True) == {"BOOL": True}
    assert attribute(None) == {"NULL": True}
    assert attribute(b"\x00\xff") == {"B": "AP8="}
    assert attribute({"a": [1, "b", None]}) == {
        "M": {"a": {"L": [{"N": "1"}, {"S": "b"}, {"NULL": True}]}}}
    assert attribute(float("nan")) == {"S": "nan"}  # DynamoDB numbers cannot be NaN


CHANGE = Change(seq=7, op="U", ts=1700000000.5, keys={"id": 1},
                new={"id": 1, "name": "new"}, old={"id": 1, "name": "old"})


@pytest.mark.parametrize("view,images", [
    ("KEYS_ONLY", set()), ("NEW_IMAGE", {"NewImage"}), ("OLD_IMAGE", {"OldImage"}),
    ("NEW_AND_OLD_IMAGES", {"NewImage", "OldImage"}),
])
def test_images_follow_the_view_type(view, images):
    rec = stream_record(CHANGE, view=view, source_key="k", source_arn="arn:aws:dynamodb:x",
                        dayfly_arn="arn:dayfly:table:x", region="us-east-1")
    assert rec["eventName"] == "MODIFY" and rec["eventVersion"] == "1.1"
    assert rec["eventSource"] == "aws:dynamodb" and rec["awsRegion"] == "us-east-1"
    assert rec["eventSourceARN"] == "arn:aws:dynamodb:x"
    assert rec["dayfly"] == {"eventSourceArn": "arn:dayfly:table:x"}
    ddb = rec["dynamodb"]
    assert {"NewImage", "OldImage"} & ddb.keys() == images
    assert ddb["Keys"] == {"id": {"N": "1"}}
    assert ddb["SequenceNumber"] == "7" and ddb["StreamViewType"] == view
    assert ddb["ApproximateCreationDateTime"] == 1700000000 and ddb["SizeBytes"] > 0
    again = stream_record(CHANGE, view=view, source_key="k", source_arn="a", dayfly_arn="d",
                          region="r")
    assert again["eventID"] == rec["eventID"]  # stable across redeliveries


def test_on_failure_record_shape():
    rec = failure_record([CHANGE, CHANGE], condition="RetryAttemptsExhausted", attempts=3,
                         function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
                         error_type="Unhandled", source_key="k", source_arn="arn:aws:dynamodb:x",
                         dayfly_arn="arn:dayfly:table:x", request_id="r")
    assert rec["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert rec["requestContext"]["approximateInvokeCount"] == 3
    info = rec["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == "7" and info["batchSize"] == 2
    assert info["streamArn"] == "arn:aws:dynamodb:x" and info["shardId"].startswith("shardId-")
    assert rec["dayfly"] == {"eventSourceArn": "arn:dayfly:table:x"}


def test_stream_arns_name_the_table_and_its_database():
    """AWS's stream ARN shape, table/NAME/stream/LABEL: the label names the database."""
    lite = parse_table_url("sqlite:///var/lib/app.db#orders")
    arn = stream_arn(lite, "eu-west-1")
    assert arn.startswith("arn:aws:dynamodb:eu-west-1:000000000000:table/orders/stream/sqlite:app.db:")
    assert stream_arn(parse_table_url("sqlite:///srv/app.db#orders"), "eu-west-1") != arn
    items = stream_arn(parse_table_url("sqlite:///var/lib/app.db#items"), "eu-west-1")
    assert items.rpartition("/")[2] == arn.rpartition("/")[2]  # one database, one label
    pg = parse_table_url("postgresql://bob:secret@db.local:6543/shop#orders")
    assert stream_arn(pg, "us-east-1") == (
        "arn:aws:dynamodb:us-east-1:000000000000:table/public.orders/stream/"
        "postgresql:db.local:6543:shop")
    for a, table in ((arn, "orders"), (stream_arn(pg, "us-east-1"), "public.orders")):
        parsed = ArnParser().parse_arn(a)
        assert (parsed["partition"], parsed["service"]) == ("aws", "dynamodb")
        kind, name, stream, label = parsed["resource"].split("/")  # no '/' inside the label
        assert (kind, name, stream) == ("table", table, "stream") and label


def test_source_urls():
    u = parse_table_url("sqlite:///var/lib/app.db#orders")
    assert (u.scheme, u.dsn, u.table, u.arn) == (
        "sqlite", "/var/lib/app.db", "orders", "arn:dayfly:table:sqlite:///var/lib/app.db#orders")
    assert parse_table_url(u.arn) == u
    p = parse_table_url("postgresql://bob:secret@db.local:6543/shop?view=KEYS_ONLY#orders")
    assert p.table == "public.orders" and p.view == "KEYS_ONLY"
    assert "secret" not in p.arn and "secret" not in p.key and "secret" in p.dsn
    assert p.arn == "arn:dayfly:table:postgresql://bob:***@db.local:6543/shop#public.orders"


@pytest.mark.parametrize("url,why", [
    ("sqlite:///tmp/app.db", "the table is missing"),
    ("sqlite://relative.db#t", "absolute path"),
    ("mysql://h/db#t", "scheme must be"),
    ("postgresql:///db#t", "needs a host"),
    ("postgresql://h:port/db#t", "port is not a number"),
    ("postgresql://h/db#a.b.c", "not a [schema.]table"),
    ("sqlite:///tmp/a.db?view=ALL#t", "view must be one of"),
    ("sqlite:///tmp/a.db#drop table", "not a table name"),
])
def test_malformed_source_urls(url, why):
    with pytest.raises(InvalidParameter) as info:
        parse_table_url(url)
    assert why in info.value.message
