"""What the SecOps DUO_TELEPHONY parser makes of one raw Duo telephony record.

Reproduces the parser's actual behaviour as documented in the project's reference table
(``secops-feed-and-udm.md``), not Google's guide where the two differ. The output is the UDM
event in the JSON form SecOps shows (camelCase field names).

Rules beyond the table, decided here:

- Only non-empty *string* values are mapped. Google's test data shows an integer ``credits`` is
  not mapped; the same is assumed for every other raw field (a number, list, object, boolean
  or null maps to nothing).
- ``ts`` is ISO 8601; one without an offset is read as UTC (an assumption: Duo sends one).
  A ``ts`` or ``timestamp`` that is present but cannot be read raises :class:`MappingError`
  instead of silently producing an event with no or a wrong time; it never falls back.
- Times keep up to nanosecond precision and are written as protobuf JSON does (0, 3, 6 or 9
  fractional digits), e.g. ``2023-03-21T22:34:49.466370Z``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.clock import EPOCH

# Raw fields mapped as is, each to one or more UDM paths; a path ending in "[]" is a list.
_AS_IS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("context", ("metadata.productEventType",)),
    ("telephony_id", ("metadata.productLogId",)),
    ("phone", ("principal.user.phoneNumbers[]", "principal.user.userid")),
    ("type", ("securityResult.summary",)),
)
# Raw fields that become a securityResult.detectionFields entry with the field name as key.
_DETECTION_FIELDS: tuple[str, ...] = ("credits", "eventtype")
_HOST_NAME_PATHS = ("principal.hostname", "principal.asset.hostname")
_HOST_IP_PATHS = ("principal.ip[]", "principal.asset.ip[]")
_STATIC: tuple[tuple[str, Any], ...] = (
    ("metadata.vendorName", "Duo"),
    ("metadata.productName", "Telephony"),
    ("metadata.logType", "DUO_TELEPHONY"),
    ("securityResult.action", ["ALLOW"]),
    ("securityResult.severity", "INFORMATIONAL"),
    ("target.application", "Duo Telephony"),
    ("extensions.auth.mechanism", ["MECHANISM_UNSPECIFIED"]),
)

# Every UDM field the parser fills from the record (static and derived ones are always set).
# "detectionFields[KEY]" names the entry with that key.
FILLABLE_FIELDS: tuple[str, ...] = (
    "metadata.eventTimestamp",
    "metadata.productEventType",
    "metadata.productLogId",
    "principal.user.phoneNumbers",
    "principal.user.userid",
    "principal.hostname",
    "principal.asset.hostname",
    "principal.ip",
    "principal.asset.ip",
    "securityResult.detectionFields[credits]",
    "securityResult.detectionFields[eventtype]",
    "securityResult.summary",
)

_ISO_8601 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?"
)
_MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second UDM can hold


class MappingError(ValueError):
    """The record cannot be mapped faithfully (today: an unreadable ``ts`` or ``timestamp``)."""


def to_udm(record: Mapping[str, Any]) -> dict[str, Any]:
    """The UDM event for one raw record; raises :class:`MappingError` for an unreadable time."""
    event: dict[str, Any] = {}
    timestamp = _event_timestamp(record)
    if timestamp is not None:
        _put(event, "metadata.eventTimestamp", timestamp)
    for raw_name, paths in _AS_IS:
        value = _text(record, raw_name)
        if value is not None:
            for path in paths:
                _put(event, path, value)
    host = _text(record, "host")
    if host is not None:
        for path in _HOST_IP_PATHS if _is_ip(host) else _HOST_NAME_PATHS:
            _put(event, path, host)
    for raw_name in _DETECTION_FIELDS:
        value = _text(record, raw_name)
        if value is not None:
            _put(event, "securityResult.detectionFields[]", {"key": raw_name, "value": value})
    for path, value in _STATIC:
        # A fresh list per event: callers may change the event they get.
        _put(event, path, list(value) if isinstance(value, list) else value)
    _put(event, "metadata.eventType", _event_type(record))
    # UDM's security_result is repeated; the parser fills exactly one.
    event["securityResult"] = [event["securityResult"]]
    return event


def empty_fields(event: Mapping[str, Any]) -> list[str]:
    """The paths of :data:`FILLABLE_FIELDS` that a mapped event leaves empty, in that order."""
    return [path for path in FILLABLE_FIELDS if not _has(event, path)]


def _event_type(record: Mapping[str, Any]) -> str:
    has_host = _text(record, "host") is not None
    if has_host and _text(record, "context") is not None:
        return "USER_UNCATEGORIZED"
    return "STATUS_UPDATE" if has_host else "GENERIC_EVENT"


def _text(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    return value if isinstance(value, str) and value else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _absent(value: Any) -> bool:
    return value is None or value == ""


def _event_timestamp(record: Mapping[str, Any]) -> str | None:
    ts = record.get("ts")
    if not _absent(ts):
        return _format(*_parse_iso(ts))
    epoch = record.get("timestamp")
    if not _absent(epoch):
        return _format(*_parse_epoch(epoch))
    return None


def _parse_iso(value: Any) -> tuple[int, int]:
    """(seconds since the epoch, nanoseconds) of an ISO 8601 ``ts``."""
    match = _ISO_8601.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise MappingError(f"ts is not an ISO 8601 date-time: {value!r:.80}")
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0))
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=timezone(-offset if sign == "-" else offset),
        )
    except ValueError as exc:
        raise MappingError(f"ts is not a valid date-time: {value!r:.80} ({exc})") from None
    seconds = (moment - EPOCH) // timedelta(seconds=1)
    return seconds, int((fraction or "").ljust(9, "0"))


def _parse_epoch(value: Any) -> tuple[int, int]:
    """(seconds since the epoch, nanoseconds) of a ``timestamp`` in Unix epoch seconds."""
    # bool is an int subclass, but true/false is no time.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MappingError(f"timestamp is not a number of epoch seconds: {value!r:.80}")
    try:
        # repr() of a float is its shortest exact decimal form: no binary rounding noise.
        number = Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise MappingError(f"timestamp is not a number of epoch seconds: {value!r:.80}")
    # Checked before the conversion so that "1e999999999" cannot build a gigantic integer.
    if number.copy_abs() > _MAX_EPOCH_SECONDS:
        raise MappingError(f"timestamp is out of range: {value!r:.80}")
    nanos_total = int(number.scaleb(9).to_integral_value())
    seconds, nanos = divmod(nanos_total, 10**9)
    return seconds, nanos


def _format(seconds: int, nanos: int) -> str:
    try:
        moment = EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        # UDM times are protobuf Timestamps, which also stop at years 1 and 9999.
        raise MappingError(f"event time is out of range: {seconds} s since the epoch") from None
    text = moment.replace(tzinfo=None).isoformat(timespec="seconds")
    if nanos:
        digits = 3 if nanos % 1_000_000 == 0 else 6 if nanos % 1_000 == 0 else 9
        text += "." + f"{nanos:09d}"[:digits]
    return text + "Z"


def _put(event: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = event
    for name in parents:
        node = node.setdefault(name, {})
    if leaf.endswith("[]"):
        node.setdefault(leaf[:-2], []).append(value)
    else:
        node[leaf] = value


def _has(event: Mapping[str, Any], path: str) -> bool:
    node: Any = event
    for part in path.split("."):
        name, _, key = part.partition("[")
        if isinstance(node, list):  # securityResult: the parser fills its first element
            node = node[0] if node else None
        if not isinstance(node, Mapping) or name not in node:
            return False
        node = node[name]
        if key:
            node = [entry for entry in node if entry.get("key") == key.rstrip("]")]
    return node not in (None, "", [], {})
