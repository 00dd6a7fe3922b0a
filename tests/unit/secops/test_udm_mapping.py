"""The mapper against every row of the reference table (secops-feed-and-udm.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.secops.udm_mapping import FILLABLE_FIELDS, MappingError, empty_fields, to_udm

# The example response of Duo's telephony v2 documentation.
SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "duo-docs-telephony-v2.json"

# What every event carries whatever the record holds.
STATIC = {
    "metadata": {
        "vendorName": "Duo",
        "productName": "Telephony",
        "logType": "DUO_TELEPHONY",
        "eventType": "GENERIC_EVENT",
    },
    "securityResult": [{"action": ["ALLOW"], "severity": "INFORMATIONAL"}],
    "target": {"application": "Duo Telephony"},
    "extensions": {"auth": {"mechanism": ["MECHANISM_UNSPECIFIED"]}},
}

DUO_ITEM = {
    "context": "authentication",
    "credits": 2,
    "phone": "+17345551311",
    "telephony_id": "60799fee-f08f-4ba8-971f-4e53b3473e9a",
    "ts": "2023-01-26T20:54:12.573580+00:00",
    "txid": "373bd5f3-1e42-4a5d-aefa-b33ae278fac8",
    "type": "phone",
}


def detection_fields(event: dict) -> list[dict]:
    return event["securityResult"][0].get("detectionFields", [])


# --- one test per row of the table -------------------------------------------------------


def test_context_is_the_product_event_type() -> None:
    assert to_udm({"context": "verify"})["metadata"]["productEventType"] == "verify"


def test_telephony_id_is_the_product_log_id() -> None:
    event = to_udm({"telephony_id": "5bf1a860-fe39-49e3-be29-217659663a74"})
    assert event["metadata"]["productLogId"] == "5bf1a860-fe39-49e3-be29-217659663a74"


def test_ts_is_the_event_timestamp_in_utc_with_fractional_seconds_kept() -> None:
    event = to_udm({"ts": "2023-03-21T22:34:49.466370+00:00"})
    assert event["metadata"]["eventTimestamp"] == "2023-03-21T22:34:49.466370Z"


def test_ts_with_an_offset_is_converted_to_utc() -> None:
    event = to_udm({"ts": "2023-03-21T23:34:49.466370+01:00"})
    assert event["metadata"]["eventTimestamp"] == "2023-03-21T22:34:49.466370Z"
    event = to_udm({"ts": "2023-03-21T17:04:49.1-0530"})
    assert event["metadata"]["eventTimestamp"] == "2023-03-21T22:34:49.100Z"


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2023-03-21T22:34:49+00:00", "2023-03-21T22:34:49Z"),
        ("2023-03-21T22:34:49.5Z", "2023-03-21T22:34:49.500Z"),
        ("2023-03-21T22:34:49.466370123Z", "2023-03-21T22:34:49.466370123Z"),
        ("2023-03-21 22:34:49.4663", "2023-03-21T22:34:49.466300Z"),  # no offset: UTC
    ],
)
def test_ts_precision_is_written_as_protobuf_json_does(ts: str, expected: str) -> None:
    assert to_udm({"ts": ts})["metadata"]["eventTimestamp"] == expected


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1679438089, "2023-03-21T22:34:49Z"),
        (1679438089.46637, "2023-03-21T22:34:49.466370Z"),
        ("1679438089.466370", "2023-03-21T22:34:49.466370Z"),
        ("1679438089", "2023-03-21T22:34:49Z"),
    ],
)
def test_without_ts_the_epoch_seconds_timestamp_is_used(timestamp: object, expected: str) -> None:
    assert to_udm({"timestamp": timestamp})["metadata"]["eventTimestamp"] == expected
    assert to_udm({"ts": "", "timestamp": timestamp})["metadata"]["eventTimestamp"] == expected


def test_ts_wins_over_timestamp() -> None:
    event = to_udm({"ts": "2023-01-26T20:54:12.573580+00:00", "timestamp": 1679438089})
    assert event["metadata"]["eventTimestamp"] == "2023-01-26T20:54:12.573580Z"


def test_without_ts_or_timestamp_there_is_no_event_timestamp() -> None:
    assert "eventTimestamp" not in to_udm({"context": "verify"})["metadata"]
    assert "eventTimestamp" not in to_udm({"ts": "", "timestamp": ""})["metadata"]


@pytest.mark.parametrize(
    "record",
    [
        {"ts": "yesterday"},
        {"ts": "2023-02-30T00:00:00Z"},
        {"ts": "2023-03-21"},
        {"ts": 1679438089},
        {"ts": "not a time", "timestamp": 1679438089},  # no silent fallback
        {"timestamp": "soon"},
        {"timestamp": True},
        {"timestamp": "NaN"},
        {"timestamp": 1679438089466 * 10**9},  # far beyond year 9999
        {"ts": "9999-12-31T23:00:00-05:00"},  # year 10000 in UTC
    ],
)
def test_an_unreadable_time_is_a_mapping_error(record: dict) -> None:
    with pytest.raises(MappingError, match=r"^(ts|timestamp|event time) "):
        to_udm(record)


def test_phone_is_the_phone_number_list_and_the_userid() -> None:
    user = to_udm({"phone": "+12125556707"})["principal"]["user"]
    assert user == {"phoneNumbers": ["+12125556707"], "userid": "+12125556707"}


def test_a_host_name_in_host_is_the_principal_and_asset_hostname() -> None:
    principal = to_udm({"host": "api-xxxxxxxx.duosecurity.com"})["principal"]
    assert principal == {
        "hostname": "api-xxxxxxxx.duosecurity.com",
        "asset": {"hostname": "api-xxxxxxxx.duosecurity.com"},
    }


def test_an_ipv4_address_in_host_is_the_principal_and_asset_ip() -> None:
    principal = to_udm({"host": "192.0.2.10"})["principal"]
    assert principal == {"ip": ["192.0.2.10"], "asset": {"ip": ["192.0.2.10"]}}


def test_an_ipv6_address_in_host_is_the_principal_and_asset_ip() -> None:
    principal = to_udm({"host": "2001:db8::1"})["principal"]
    assert principal == {"ip": ["2001:db8::1"], "asset": {"ip": ["2001:db8::1"]}}


def test_a_string_credits_is_a_detection_field() -> None:
    assert detection_fields(to_udm({"credits": "1"})) == [{"key": "credits", "value": "1"}]


def test_an_integer_credits_is_not_mapped() -> None:
    event = to_udm({"credits": 1})
    assert "detectionFields" not in event["securityResult"][0]
    assert event == STATIC


def test_eventtype_is_a_detection_field() -> None:
    event = to_udm({"eventtype": "telephony", "credits": "0"})
    assert detection_fields(event) == [
        {"key": "credits", "value": "0"},
        {"key": "eventtype", "value": "telephony"},
    ]


def test_type_is_the_security_result_summary() -> None:
    assert to_udm({"type": "sms"})["securityResult"][0]["summary"] == "sms"


def test_static_fields_are_set_on_every_event() -> None:
    assert to_udm({}) == STATIC


@pytest.mark.parametrize(
    ("record", "event_type"),
    [
        ({"context": "authentication", "host": "api-1.duosecurity.com"}, "USER_UNCATEGORIZED"),
        ({"context": "authentication", "host": "192.0.2.10"}, "USER_UNCATEGORIZED"),
        ({"host": "api-1.duosecurity.com"}, "STATUS_UPDATE"),
        ({"context": "", "host": "api-1.duosecurity.com"}, "STATUS_UPDATE"),
        ({"context": "authentication"}, "GENERIC_EVENT"),
        ({"context": "authentication", "host": ""}, "GENERIC_EVENT"),
        ({}, "GENERIC_EVENT"),
    ],
)
def test_event_type_is_derived_from_context_and_host(record: dict, event_type: str) -> None:
    assert to_udm(record)["metadata"]["eventType"] == event_type


# --- the cases around the table ----------------------------------------------------------


def test_empty_strings_count_as_absent_and_produce_no_fields() -> None:
    fields = ("context", "telephony_id", "ts", "timestamp", "phone", "host", "credits")
    record = {name: "" for name in (*fields, "eventtype", "type")}
    assert to_udm(record) == STATIC


def test_values_that_are_not_strings_are_not_mapped() -> None:
    record = {"phone": 12125556707, "context": None, "host": ["a"], "type": {"x": 1}}
    assert to_udm(record) == STATIC


def test_unknown_extra_fields_are_ignored() -> None:
    extra = {**DUO_ITEM, "new_field": "x", "access_device": {"ip": "192.0.2.1"}, "stat": "OK"}
    assert to_udm(extra) == to_udm(DUO_ITEM)


def test_a_record_as_duos_python_client_enriches_it() -> None:
    record = {**DUO_ITEM, "eventtype": "telephony", "host": "api-xxxxxxxx.duosecurity.com"}
    assert to_udm(record) == {
        "metadata": {
            "eventTimestamp": "2023-01-26T20:54:12.573580Z",
            "productEventType": "authentication",
            "productLogId": "60799fee-f08f-4ba8-971f-4e53b3473e9a",
            "vendorName": "Duo",
            "productName": "Telephony",
            "logType": "DUO_TELEPHONY",
            "eventType": "USER_UNCATEGORIZED",
        },
        "principal": {
            "user": {"phoneNumbers": ["+17345551311"], "userid": "+17345551311"},
            "hostname": "api-xxxxxxxx.duosecurity.com",
            "asset": {"hostname": "api-xxxxxxxx.duosecurity.com"},
        },
        "securityResult": [
            {
                "detectionFields": [{"key": "eventtype", "value": "telephony"}],
                "summary": "phone",
                "action": ["ALLOW"],
                "severity": "INFORMATIONAL",
            }
        ],
        "target": {"application": "Duo Telephony"},
        "extensions": {"auth": {"mechanism": ["MECHANISM_UNSPECIFIED"]}},
    }


def test_the_sample_file_maps_to_three_events_with_its_values() -> None:
    items = json.loads(SAMPLE.read_text())["response"]["items"]
    events = [to_udm(item) for item in items]
    assert [e["metadata"]["productLogId"] for e in events] == [
        "220f89ff-bff8-4466-b6cb-b7787940ce68",
        "60799fee-f08f-4ba8-971f-4e53b3473e9a",
        "5bf1a860-fe39-49e3-be29-217659663a74",
    ]
    assert [e["metadata"]["eventTimestamp"] for e in events] == [
        "2023-03-21T22:34:49.466370Z",
        "2023-01-26T20:54:12.573580Z",
        "2022-10-25T16:07:45.304526Z",
    ]
    assert [e["metadata"]["productEventType"] for e in events] == [
        "enrollment",
        "authentication",
        "administrator login",
    ]
    assert [e["principal"]["user"]["userid"] for e in events] == [
        "+12125556707",
        "+17345551311",
        "+13135559542",
    ]
    assert [e["securityResult"][0]["summary"] for e in events] == ["sms", "phone", "sms"]
    # Raw v2 items have no host and integer credits: generic events, no detection fields.
    assert {e["metadata"]["eventType"] for e in events} == {"GENERIC_EVENT"}
    assert all("detectionFields" not in e["securityResult"][0] for e in events)
    assert all(set(e["principal"]) == {"user"} for e in events)


def test_events_are_independent_and_json_serialisable() -> None:
    first, second = to_udm(DUO_ITEM), to_udm(DUO_ITEM)
    first["securityResult"][0]["action"].append("BLOCK")
    assert second["securityResult"][0]["action"] == ["ALLOW"]
    assert json.loads(json.dumps(second)) == second


def test_empty_fields_of_a_raw_duo_item() -> None:
    assert empty_fields(to_udm(DUO_ITEM)) == [
        "principal.hostname",
        "principal.asset.hostname",
        "principal.ip",
        "principal.asset.ip",
        "securityResult.detectionFields[credits]",
        "securityResult.detectionFields[eventtype]",
    ]


def test_empty_fields_of_an_enriched_record_with_an_ip_host() -> None:
    record = {**DUO_ITEM, "credits": "2", "eventtype": "telephony", "host": "192.0.2.10"}
    assert empty_fields(to_udm(record)) == ["principal.hostname", "principal.asset.hostname"]


def test_empty_fields_of_an_empty_record_are_all_fillable_fields() -> None:
    assert empty_fields(to_udm({})) == list(FILLABLE_FIELDS)
