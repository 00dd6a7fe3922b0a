import json

import pytest

from shared.duo.errors import (
    DuoClockSkewError,
    DuoConfigurationError,
    DuoInvalidRequestError,
    DuoRateLimitedError,
    DuoTransientError,
    error_from_response,
)


def body(code, message, detail=None):
    return json.dumps(
        {"stat": "FAIL", "code": code, "message": message, "message_detail": detail}
    ).encode()


@pytest.mark.parametrize(
    ("status", "payload", "kind", "retryable", "mentions"),
    [
        (
            401,
            body(40102, "Invalid integration key in request credentials"),
            DuoConfigurationError,
            False,
            "DUO_IKEY",
        ),
        (
            401,
            body(40103, "Invalid signature in request credentials"),
            DuoConfigurationError,
            False,
            "secret key",
        ),
        (401, body(40105, "Request has invalid date/timestamp"), DuoClockSkewError, False, "clock"),
        (403, body(40301, "Access forbidden"), DuoConfigurationError, False, "permission"),
        (
            400,
            body(40002, "Invalid request parameters", "mintime must be within the past 180 days"),
            DuoInvalidRequestError,
            False,
            "180 days",
        ),
        (429, body(42901, "Too Many Requests"), DuoRateLimitedError, True, "42901"),
        (500, body(50000, "Internal error"), DuoTransientError, True, "500"),
        (502, b"<html>Bad gateway</html>", DuoTransientError, True, "502"),
        (429, b"", DuoRateLimitedError, True, "429"),
    ],
)
def test_answers_are_classified(status, payload, kind, retryable, mentions):
    error = error_from_response(status, payload)
    assert type(error) is kind
    assert error.retryable is retryable
    assert mentions in str(error)
    assert error.status == status
