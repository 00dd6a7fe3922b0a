"""What a Duo telephony item must hold for the pipeline to place it: an id and a time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.clock import EPOCH


class RecordError(ValueError):
    """An item that lacks what every telephony record has."""


def record_id(item: Any) -> str:
    if not isinstance(item, dict):
        raise RecordError(f"an item that is not an object: {item!r:.200}")
    value = item.get("telephony_id")
    if not isinstance(value, str) or not value:
        raise RecordError(f"an item without a telephony_id: {item!r:.200}")
    return value


def record_time_us(item: dict[str, Any]) -> int:
    """The item's ``ts`` in microseconds since the epoch (Duo's ISO 8601 with microseconds)."""
    value = item.get("ts")
    try:
        parsed = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RecordError(
            f"item {item.get('telephony_id')!r} has no valid ts: {value!r:.80}"
        ) from None
    if parsed.tzinfo is None:
        raise RecordError(f"item {item.get('telephony_id')!r} has a ts with no offset")
    delta = parsed - EPOCH
    return delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds


def record_time_ms(item: dict[str, Any]) -> int:
    return record_time_us(item) // 1000


def enriched(item: dict[str, Any], host: str) -> dict[str, Any]:
    """The item as Duo's own Python client returns it: ``eventtype`` and ``host`` appended,
    which the DUO_TELEPHONY parser turns into USER_UNCATEGORIZED events with a hostname."""
    return {**item, "eventtype": "telephony", "host": host}
