"""Unit tests are hermetic: a unit test that opens a connection or resolves a name fails.

Anything that needs the network (even 127.0.0.1) belongs in tests/integration.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from_threads: list[str] = []

    def refuse(what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempt = f"{what}{args!r}"
            if threading.current_thread() is not threading.main_thread():
                from_threads.append(attempt)
            # pytest.fail raises a BaseException, which `except Exception` in the code under
            # test does not swallow.
            pytest.fail(f"a unit test used the network: {attempt}; move it to tests/integration")

        return refused

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    yield
    # A failure raised in another thread never reaches the test: fail it here.
    if from_threads:
        pytest.fail(f"a unit test used the network from a thread: {', '.join(from_threads)}")
