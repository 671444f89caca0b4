"""What the OpenAPI document says about each management operation beyond its path: summary,
query parameters, request body and success response. `openapi.py` adds the rest."""

from __future__ import annotations

from typing import Any

STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
BOOL: dict[str, Any] = {"type": "boolean"}
OBJ: dict[str, Any] = {"type": "object", "additionalProperties": True}
STATUSES = ["success", "error", "timeout", "crash"]


def q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def body(schema: dict[str, Any], media: str = "application/json",
         required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {media: {"schema": schema}}}


def obj(**props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "additionalProperties": True}


def arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


WINDOW = q("window", {"type": "integer", "minimum": 60, "maximum": 604800},
           "Seconds of history (default 3600).")
IDS = body(obj(ids=arr(STR)), required=False)
V = "/dayfly/v1"

# (method, path) -> operation fields; "ok" is the success status (default 200), "media" the
# success content type (default JSON), "tag" groups operations.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/healthz"): {"summary": "Liveness, version and isolation tiers.", "tag": "platform"},
    ("GET", "/metrics"): {"summary": "Prometheus metrics (text format 0.0.4).", "tag": "platform",
                          "media": "text/plain"},
    ("GET", f"{V}/nodes"): {"summary": "The live nodes of the cluster (one node: itself): "
                                       "address, tiers, load, warm instances per function, "
                                       "last heartbeat.", "tag": "platform"},
    ("GET", f"{V}/doctor"): {"summary": "Isolation tiers available on this machine, and why.",
                             "tag": "platform"},
    ("GET", f"{V}/stats"): {"summary": "Every function's invocation stats over a window, and "
                                       "platform health.", "tag": "observability",
                            "parameters": [WINDOW]},
    ("GET", f"{V}/functions/{{name}}/stats"): {
        "summary": "One function's stats over a window: summary, cold vs warm, time series.",
        "tag": "observability",
        "parameters": [WINDOW, q("step", {"type": "integer", "minimum": 1},
                                 "Seconds per point (default window/60).")]},
    ("POST", f"{V}/functions/{{name}}/deploy"): {
        "summary": "Create or update a function from a zip; NDJSON progress lines.",
        "tag": "functions", "media": "application/x-ndjson",
        "parameters": [q("publish", {"type": "string", "enum": ["0", "1"]},
                         "1 publishes a version.")],
        "requestBody": body({"type": "string", "format": "binary"}, "application/octet-stream")},
    ("GET", f"{V}/functions/{{name}}/instances"): {"summary": "Instances of a function now.",
                                                   "tag": "functions"},
    ("DELETE", f"{V}/functions/{{name}}/instances"): {
        "summary": "Stop every idle instance (scale to zero).", "tag": "functions", "ok": 204},
    ("GET", f"{V}/functions/{{name}}/invocations"): {
        "summary": "Recent invocation records, newest first.", "tag": "observability",
        "parameters": [q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                       q("status", {"type": "string", "enum": STATUSES}),
                       q("since", NUM, "Epoch seconds.")]},
    ("GET", f"{V}/functions/{{name}}/logs"): {
        "summary": "Log text of recent invocations as NDJSON; follow=1 keeps streaming.",
        "tag": "observability", "media": "application/x-ndjson",
        "parameters": [q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                       q("since", NUM, "Epoch seconds."),
                       q("follow", {"type": "string", "enum": ["0", "1", "true"]})]},
    ("GET", f"{V}/invocations/{{request_id}}"): {"summary": "One invocation record.",
                                                 "tag": "observability"},
    ("GET", f"{V}/bundles/{{digest}}.zip"): {"summary": "A code bundle by its SHA-256.",
                                             "tag": "functions", "media": "application/zip"},
    ("GET", f"{V}/functions/{{name}}/dlq"): {
        "summary": "Dead letters of a function.", "tag": "async",
        "parameters": [q("limit", {"type": "string", "pattern": "^[0-9]+$"})]},
    ("GET", f"{V}/functions/{{name}}/dlq/{{event_id}}"): {"summary": "One dead letter.",
                                                          "tag": "async"},
    ("POST", f"{V}/functions/{{name}}/dlq/redrive"): {
        "summary": "Queue dead letters again (all, or the given ids).", "tag": "async",
        "requestBody": IDS},
    ("DELETE", f"{V}/functions/{{name}}/dlq"): {
        "summary": "Delete dead letters (all, or the given ids).", "tag": "async",
        "requestBody": IDS},
    ("GET", f"{V}/secrets"): {"summary": "Secret names and the functions using them.",
                              "tag": "secrets"},
    ("PUT", f"{V}/secrets/{{name}}"): {"summary": "Set a secret.", "tag": "secrets", "ok": 204,
                                       "requestBody": body(obj(value=STR))},
    ("DELETE", f"{V}/secrets/{{name}}"): {"summary": "Delete a secret.", "tag": "secrets",
                                          "ok": 204},
    ("GET", f"{V}/keys"): {"summary": "S3 access keys (never their secrets).", "tag": "access"},
    ("POST", f"{V}/keys"): {"summary": "Create an S3 access key; the secret is shown once.",
                            "tag": "access", "ok": 201,
                            "requestBody": body(obj(description=STR), required=False)},
    ("DELETE", f"{V}/keys/{{key_id}}"): {"summary": "Delete an S3 access key.", "tag": "access",
                                         "ok": 204},
    ("GET", f"{V}/routes"): {"summary": "HTTP routes ([http] in dayfly.toml) and function URLs "
                                        "this node serves.", "tag": "functions",
                             "parameters": [q("function", STR, "Only this function's.")]},
    ("GET", f"{V}/tokens"): {"summary": "API tokens (never their values).", "tag": "access"},
    ("POST", f"{V}/tokens"): {"summary": "Create an API token; its value is shown once.",
                              "tag": "access", "ok": 201,
                              "requestBody": body(obj(description=STR), required=False)},
    ("DELETE", f"{V}/tokens/{{token_id}}"): {"summary": "Revoke an API token.", "tag": "access",
                                             "ok": 204},
    ("GET", f"{V}/schedules"): {"summary": "Cron and rate schedules.", "tag": "triggers",
                                "parameters": [q("FunctionName", STR)]},
    ("POST", f"{V}/schedules"): {
        "summary": "Create a schedule.", "tag": "triggers", "ok": 201,
        "requestBody": body(obj(FunctionName=STR, ScheduleExpression=STR, State=STR))},
    ("GET", f"{V}/schedules/{{id}}"): {"summary": "One schedule.", "tag": "triggers"},
    ("PUT", f"{V}/schedules/{{id}}"): {"summary": "Change a schedule.", "tag": "triggers",
                                       "requestBody": body(OBJ)},
    ("DELETE", f"{V}/schedules/{{id}}"): {"summary": "Delete a schedule.", "tag": "triggers",
                                          "ok": 204},
    ("GET", f"{V}/bucket-triggers"): {
        "summary": "Bucket notifications wired to functions.", "tag": "triggers",
        "parameters": [q("function", STR), q("source", STR), q("bucket", STR)]},
    ("POST", f"{V}/bucket-triggers"): {
        "summary": "Wire a bucket's events to a function.", "tag": "triggers", "ok": 201,
        "requestBody": body(obj(function=STR, bucket=STR, source=STR, events=STR, prefix=STR,
                                suffix=STR, id=STR))},
    ("DELETE", f"{V}/bucket-triggers/{{id}}"): {
        "summary": "Remove a bucket trigger.", "tag": "triggers", "ok": 204,
        "parameters": [q("source", STR), q("bucket", STR)]},
    ("GET", f"{V}/ingest/sources"): {"summary": "External object stores (never their tokens).",
                                     "tag": "triggers"},
    ("POST", f"{V}/ingest/sources"): {
        "summary": "Register an external object store; its token is shown once.",
        "tag": "triggers", "ok": 201, "requestBody": body(obj(name=STR, description=STR))},
    ("DELETE", f"{V}/ingest/sources/{{name}}"): {"summary": "Remove an external object store.",
                                                 "tag": "triggers", "ok": 204},
    ("POST", f"{V}/ingest/s3/{{source}}"): {
        "summary": "Webhook for an external store's S3 event notifications (its own token).",
        "tag": "triggers", "requestBody": body(OBJ)},
    ("GET", f"{V}/buckets"): {"summary": "Buckets of the built-in object store.", "tag": "objects"},
    ("POST", f"{V}/buckets"): {"summary": "Create a bucket.", "tag": "objects", "ok": 201,
                               "requestBody": body(obj(name=STR))},
    ("GET", f"{V}/buckets/{{bucket}}/objects"): {
        "summary": "A page of objects and common prefixes.", "tag": "objects",
        "parameters": [q("prefix", STR), q("delimiter", STR),
                       q("after", STR, "The `after` of the previous page."),
                       q("limit", {"type": "string", "pattern": "^[0-9]+$"})]},
    ("GET", f"{V}/buckets/{{bucket}}/objects/{{key}}"): {
        "summary": "Download an object.", "tag": "objects", "media": "application/octet-stream"},
    ("PUT", f"{V}/buckets/{{bucket}}/objects/{{key}}"): {
        "summary": "Upload an object (the raw body).", "tag": "objects", "ok": 201,
        "requestBody": body({"type": "string", "format": "binary"}, "application/octet-stream")},
    ("DELETE", f"{V}/buckets/{{bucket}}/objects/{{key}}"): {"summary": "Delete an object.",
                                                            "tag": "objects", "ok": 204},
}
