"""firestore_client on the Firestore emulator: a named database (FIRESTORE_DATABASE) is its own,
apart from the project's default one, and resetting one leaves the other."""

from __future__ import annotations

from harness.emulators import ENV_VARS, FIRESTORE, LocalCloud, reset_firestore
from shared.gcp.clients import firestore_client

NAMED = "duo-telephony"


def test_a_named_database_is_apart_from_the_default_one(local_cloud: LocalCloud) -> None:
    host, project = local_cloud.env[ENV_VARS[FIRESTORE]], local_cloud.project
    reset_firestore(host, project)
    reset_firestore(host, project, NAMED)
    named = firestore_client(project, NAMED)
    default = firestore_client(project)
    try:
        named.document("telephony_sources/in-named").set({"n": 1})
        default.document("telephony_sources/in-default").set({"n": 2})

        assert [d.id for d in named.collection("telephony_sources").stream()] == ["in-named"]
        assert [d.id for d in default.collection("telephony_sources").stream()] == ["in-default"]

        reset_firestore(host, project, NAMED)
        assert list(named.collection("telephony_sources").stream()) == []
        assert [d.id for d in default.collection("telephony_sources").stream()] == ["in-default"]
    finally:
        reset_firestore(host, project)
        named.close()
        default.close()
