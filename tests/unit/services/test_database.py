"""Each service opens the Firestore database FIRESTORE_DATABASE names (the build's own), and the
project's default one when it is unset."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.fetcher import main as fetcher_main
from services.planner import main as planner_main
from services.writer import main as writer_main

ENV = {
    "GOOGLE_CLOUD_PROJECT": "acme-prod",
    "GCS_BUCKET": "acme-duo",
    "DUO_API_HOST": "api-1a2b3c4d.duosecurity.com",
    "DUO_IKEY": "DIWJ8X6AEYOR5OMC6TQ1",
    "DUO_SKEY": "not-a-real-key",
}


class Opened(Exception):
    """Stops the app's construction once its Firestore client is asked for."""


@pytest.mark.parametrize(
    ("module", "create"),
    [
        (planner_main, planner_main.create_planner_app),
        (fetcher_main, fetcher_main.create_fetcher_app),
        (writer_main, writer_main.create_writer_app),
    ],
)
@pytest.mark.parametrize(("named", "opened"), [("duo-telephony", "duo-telephony"), (None, None)])
def test_each_service_opens_the_database_named(
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    create: Callable[..., Any],
    named: str | None,
    opened: str | None,
) -> None:
    asked = []

    def firestore_client(project: str, database: str | None = None) -> None:
        asked.append((project, database))
        raise Opened

    monkeypatch.setattr(module, "firestore_client", firestore_client)
    env = ENV | ({"FIRESTORE_DATABASE": named} if named else {})
    with pytest.raises(Opened):
        create(env)
    assert asked == [("acme-prod", opened)]
