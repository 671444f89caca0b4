"""The Lambda `context` object handed to handlers."""

from __future__ import annotations

import time


class LambdaContext:
    """Same attributes and method as AWS's Python runtime context."""

    __slots__ = (
        "_deadline_ms",
        "aws_request_id",
        "buckets",
        "client_context",
        "function_name",
        "function_version",
        "idempotency_key",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
        "trace_id",
    )

    def __init__(self, env: dict, request_id: str, deadline_ms: int, arn: str,
                 client_context: object = None, trace_id: str | None = None,
                 idempotency_key: str | None = None, buckets: object = None) -> None:
        self.aws_request_id = request_id
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.invoked_function_arn = arn
        self.client_context = client_context
        self.identity = None
        self.trace_id = trace_id
        # dayfly: the same for every delivery of one event (retries, redrives), so handlers
        # can make their side effects idempotent
        self.idempotency_key = idempotency_key or request_id
        # dayfly: the function's declared buckets over the instance's channel (runtime/buckets.py),
        # None where the platform offers no binding (no `buckets`, or the gvisor tier)
        self.buckets = buckets
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))

    def __repr__(self) -> str:
        return (f"LambdaContext(aws_request_id={self.aws_request_id!r}, "
                f"function_name={self.function_name!r}, function_version={self.function_version!r})")
