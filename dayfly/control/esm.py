"""Lambda's event source mapping parameters for table sources: validation with Lambda's
constraints and messages, and the JSON shape that boto3 and the aws CLI read."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidParameter
from ..triggers.tables.mapping import Mapping
from ..triggers.tables.source import VIEWS, parse_table_url
from ..types import ACCOUNT_ID
from .model import function_arn
from .registry import split_name

UNSUPPORTED = ("Topics", "Queues", "SourceAccessConfigurations", "SelfManagedEventSource",
               "AmazonManagedKafkaEventSourceConfig", "SelfManagedKafkaEventSourceConfig",
               "ScalingConfig", "DocumentDBEventSourceConfig", "StartingPositionTimestamp",
               "ProvisionedPollerConfig")
UPDATABLE = ("FunctionName", "Enabled", "BatchSize", "MaximumBatchingWindowInSeconds",
             "DestinationConfig", "MaximumRecordAgeInSeconds", "BisectBatchOnFunctionError",
             "MaximumRetryAttempts", "ParallelizationFactor", "TumblingWindowInSeconds",
             "FunctionResponseTypes", "FilterCriteria")


def _int(params: dict[str, Any], key: str, lo: int, hi: int, default: int,
         allowed: tuple[int, ...] = ()) -> int:
    v = params.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= hi or v in allowed):
        extra = f" or {', '.join(map(str, allowed))}" if allowed else ""
        raise InvalidParameter(f"1 validation error detected: Value '{v}' at '{key}' failed to "
                               f"satisfy constraint: Member must have value between {lo} and "
                               f"{hi}{extra}")
    return v


def _bool(params: dict[str, Any], key: str, default: bool) -> bool:
    v = params.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise InvalidParameter(f"{key} must be true or false")
    return v


def _destination(params: dict[str, Any]) -> tuple[str, str | None] | None:
    config = params.get("DestinationConfig") or {}
    if not isinstance(config, dict):
        raise InvalidParameter("DestinationConfig must be an object")
    if (config.get("OnSuccess") or {}).get("Destination"):
        raise InvalidParameter("OnSuccess destinations are not supported for table sources "
                               "(as on Lambda for stream sources)")
    dest = (config.get("OnFailure") or {}).get("Destination")
    if not dest:
        return None
    if not isinstance(dest, str):
        raise InvalidParameter("DestinationConfig.OnFailure.Destination must be a function ARN")
    try:
        return split_name(dest)
    except InvalidParameter:
        raise InvalidParameter(f"The on-failure destination {dest!r} is not a dayfly function "
                               "(name or arn:aws:lambda:REGION:ACCOUNT:function:NAME)") from None


def _check_unsupported(params: dict[str, Any]) -> None:
    for key in UNSUPPORTED:
        if params.get(key):
            raise InvalidParameter(f"{key} is not supported for dayfly table sources")
    if params.get("FilterCriteria"):
        raise InvalidParameter("FilterCriteria is not supported by dayfly yet; filter in the "
                               "function")
    if params.get("ParallelizationFactor") not in (None, 1):
        raise InvalidParameter("ParallelizationFactor must be 1: dayfly reads each table with one "
                               "ordered consumer")
    if params.get("TumblingWindowInSeconds") not in (None, 0):
        raise InvalidParameter("TumblingWindowInSeconds is not supported by dayfly")


def _response_types(params: dict[str, Any], default: bool) -> bool:
    types = params.get("FunctionResponseTypes")
    if types is None:
        return default
    if not isinstance(types, list) or any(t != "ReportBatchItemFailures" for t in types):
        raise InvalidParameter("FunctionResponseTypes may only contain ReportBatchItemFailures")
    return bool(types)


def new_mapping(params: dict[str, Any], mapping_uuid: str) -> Mapping:
    """A Mapping from CreateEventSourceMapping's body (the source is not checked here)."""
    _check_unsupported(params)
    if not params.get("FunctionName"):
        raise InvalidParameter("FunctionName is required")
    if not params.get("EventSourceArn"):
        raise InvalidParameter("EventSourceArn is required (a dayfly table source, e.g. "
                               "arn:dayfly:table:sqlite:///abs/path/app.db#orders)")
    name, qualifier = split_name(params["FunctionName"])
    url = parse_table_url(params["EventSourceArn"])
    view = params.get("StreamViewType") or url.view or "NEW_AND_OLD_IMAGES"
    if view not in VIEWS:
        raise InvalidParameter(f"StreamViewType must be one of {', '.join(VIEWS)}")
    position = params.get("StartingPosition") or "LATEST"
    if position not in ("LATEST", "TRIM_HORIZON"):
        raise InvalidParameter(f"StartingPosition {position!r} is not supported for table "
                               "sources (use LATEST or TRIM_HORIZON)")
    m = Mapping(uuid=mapping_uuid, function=name, qualifier=qualifier,
                source=params["EventSourceArn"], view=view, starting_position=position)
    return changed_mapping(m, params)


def changed_mapping(m: Mapping, params: dict[str, Any]) -> Mapping:
    """Apply UpdateEventSourceMapping's fields (also used for Create's optional ones)."""
    _check_unsupported(params)
    if params.get("FunctionName"):
        m.function, m.qualifier = split_name(params["FunctionName"])
    m.enabled = _bool(params, "Enabled", m.enabled)
    m.batch_size = _int(params, "BatchSize", 1, 10000, m.batch_size)
    m.window_s = _int(params, "MaximumBatchingWindowInSeconds", 0, 300, m.window_s)
    m.max_retries = _int(params, "MaximumRetryAttempts", 0, 10000, m.max_retries, (-1,))
    m.max_age_s = _int(params, "MaximumRecordAgeInSeconds", 60, 604800, m.max_age_s, (-1,))
    m.bisect = _bool(params, "BisectBatchOnFunctionError", m.bisect)
    m.report_failures = _response_types(params, m.report_failures)
    if "DestinationConfig" in params:
        m.on_failure = _destination(params)
    return m


def mapping_json(m: Mapping, *, region: str, checkpoint: int, health: str,
                 last_result: str) -> dict[str, Any]:
    """The EventSourceMappingConfiguration shape, plus dayfly's `Health` and `Dayfly` fields."""
    url = m.url
    on_failure = ({"Destination": function_arn(region, *m.on_failure)} if m.on_failure else {})
    return {
        "UUID": m.uuid,
        "EventSourceMappingArn": f"arn:aws:lambda:{region}:{ACCOUNT_ID}:event-source-mapping:"
                                 f"{m.uuid}",
        "StartingPosition": m.starting_position,
        "BatchSize": m.batch_size,
        "MaximumBatchingWindowInSeconds": m.window_s,
        "ParallelizationFactor": 1,
        "EventSourceArn": url.arn,
        "FunctionArn": function_arn(region, m.function, m.qualifier),
        "LastModified": m.modified,
        "LastProcessingResult": last_result,
        "State": "Enabled" if m.enabled else "Disabled",
        "StateTransitionReason": "USER_INITIATED",
        "DestinationConfig": {"OnFailure": on_failure},
        "MaximumRecordAgeInSeconds": m.max_age_s,
        "BisectBatchOnFunctionError": m.bisect,
        "MaximumRetryAttempts": m.max_retries,
        "TumblingWindowInSeconds": 0,
        "FunctionResponseTypes": ["ReportBatchItemFailures"] if m.report_failures else [],
        "Health": health,
        "Dayfly": {"StreamViewType": m.view, "Checkpoint": str(checkpoint), "Table": url.masked},
    }
