"""The example function `dayfly up --example` deploys: greets whoever calls it."""

import json
import logging

log = logging.getLogger()
log.setLevel(logging.INFO)


def handler(event, context):
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    log.info("greeting %s", name)
    return {
        "message": f"hello, {name}",
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "echo": json.dumps(event)[:200],
    }
