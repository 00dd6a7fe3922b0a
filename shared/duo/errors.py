"""Duo's failures as types, so callers decide by kind: retry, back off, or stop and tell."""

from __future__ import annotations

import json


class DuoError(Exception):
    """A failed Duo request. ``retryable`` says whether trying again can help; ``account_wide``
    whether the trouble concerns every request of the account alike (credentials, throttling,
    outages) rather than what one request asked for or was answered."""

    retryable = False
    account_wide = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        detail: str | None = None,
        answer: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail
        self.answer = answer  # what Duo answered, without our hint: "Duo answered HTTP 403 ..."


class DuoConfigurationError(DuoError):
    """401xx/403xx: the credentials, host or permissions are wrong; retrying cannot fix it."""

    account_wide = True


class DuoClockSkewError(DuoConfigurationError):
    """40105: our Date is too far from Duo's clock. One retry with a fresh Date is worth it."""


class DuoInvalidRequestError(DuoError):
    """400xx: Duo refused the parameters; a bug or a clock problem, never retried."""


class DuoProtocolError(DuoError):
    """Duo answered with data that breaks its own contract (an item without an id or a valid
    ts, a paging token that is not a string, too long, or does not move): asking again gets
    the same data, so the window it was read for fails loudly."""


class DuoRateLimitedError(DuoError):
    """42901: the account's request budget is spent; the whole account must back off."""

    retryable = True
    account_wide = True


class DuoTransientError(DuoError):
    """5xx, connection errors, timeouts, or a body that is not Duo's JSON."""

    retryable = True
    account_wide = True


_CONFIGURATION_HINTS = {
    40101: "the request carried no credentials",
    40102: "check DUO_IKEY: Duo does not know this integration key on DUO_API_HOST",
    40103: "check the secret key (DUO_SKEY_SECRET or DUO_SKEY) and DUO_API_HOST: "
    "the signature does not match",
    40105: "check this machine's clock (NTP): Duo saw a Date more than 5 minutes off",
}


def error_from_response(status: int, body: bytes) -> DuoError:
    """Classifies a non-200 answer from Duo by its code, falling back on the HTTP status."""
    code, message, detail = _failure_fields(body)
    described = f"Duo answered HTTP {status}"
    if code is not None:
        described += f" code {code}"
    if message:
        described += f" ({message}{': ' + detail if detail else ''})"
    answer = described
    kind = _kind_for(status, code)
    if kind in (DuoConfigurationError, DuoClockSkewError):
        hint = _CONFIGURATION_HINTS.get(
            code or 0,
            "check that the Admin API application has the 'Grant read log' permission"
            if status == 403
            else "check DUO_API_HOST, DUO_IKEY and the secret key",
        )
        described += f": {hint}"
    return kind(described, status=status, code=code, detail=detail, answer=answer)


def _kind_for(status: int, code: int | None) -> type[DuoError]:
    if code == 40105:
        return DuoClockSkewError
    if status == 429 or code == 42901:
        return DuoRateLimitedError
    if status in (401, 403):
        return DuoConfigurationError
    if 400 <= status < 500:
        return DuoInvalidRequestError
    return DuoTransientError


def _failure_fields(body: bytes) -> tuple[int | None, str | None, str | None]:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(parsed, dict):
        return None, None, None
    code = parsed.get("code")
    message = parsed.get("message")
    detail = parsed.get("message_detail")
    return (
        code if isinstance(code, int) else None,
        message if isinstance(message, str) else None,
        detail if isinstance(detail, str) else None,
    )
