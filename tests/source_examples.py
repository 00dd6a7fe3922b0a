"""Sources as a deployment configures them, for tests: a sources file's entry and an MSP
parent (``DUO_MSP_PARENT``), each with its Secret Manager version named."""

from __future__ import annotations

import json
from typing import Any

SECRET = "projects/p/secrets/{}/versions/1"


def file_entry(source: str, **extra: Any) -> dict[str, Any]:
    """One entry of the sources file."""
    return {
        "id": source,
        "api_host": f"api-{source}.duosecurity.com",
        "ikey": "DIXXXXXXXXXXXXXXXXXX",
        "skey_secret": SECRET.format(source),
    } | extra


def parent_setting(**extra: Any) -> str:
    """``DUO_MSP_PARENT``'s value."""
    return json.dumps(
        {
            "id": "msp",
            "api_host": "api-parent.duosecurity.com",
            "ikey": "DIPARENTXXXXXXXXXXXX",
            "skey_secret": SECRET.format("parent"),
        }
        | extra
    )
