"""The window reader against a scripted Duo that pages the way Duo documents it."""

import uuid

import pytest

from shared.duo.errors import DuoProtocolError, DuoTransientError
from shared.duo.paging import (
    MAX_TOKEN_LENGTH,
    PAGE_LIMIT,
    DuoTotal,
    Page,
    WindowError,
    count_records,
    exact_total,
    parse_page,
    read_window,
)

NOW_MS = 1_800_000_000_000
HOUR = 3_600_000
MINTIME = NOW_MS - 10 * HOUR
MAXTIME = NOW_MS - HOUR


def record(ms, n, micro=0):
    from datetime import UTC, datetime

    ts = datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=(ms % 1000) * 1000 + micro)
    return {
        "context": "authentication",
        "credits": 1,
        "phone": "+12125550100",
        "telephony_id": str(uuid.UUID(int=n)),
        "ts": ts.isoformat(),
        "txid": str(uuid.UUID(int=10**9 + n)),
        "type": "sms",
    }


class ScriptedDuo:
    """Serves ``records`` (already in ts:asc order) in pages, recording every request."""

    def __init__(self, records, *, repeat_token_event=False, last_offset="absent"):
        self.records = records
        self.repeat_token_event = repeat_token_event
        self.last_offset = last_offset
        self.requests = []

    def get(self, path, params, parse):
        self.requests.append(dict(params))
        inside = [
            r for r in self.records if int(params["mintime"]) <= _ms(r) <= int(params["maxtime"])
        ]
        start = 0
        if "next_offset" in params:
            event = params["next_offset"].split(",")[1]
            start = next(i for i, r in enumerate(inside) if r["telephony_id"] == event)
            start += 0 if self.repeat_token_event else 1
        page = inside[start : start + int(params["limit"])]
        metadata = {"total_objects": len(inside)}
        if start + len(page) < len(inside):
            metadata["next_offset"] = f"{_ms(page[-1])},{page[-1]['telephony_id']}"
        elif self.last_offset == "null":
            metadata["next_offset"] = None
        return parse({"items": page, "metadata": metadata})


def _ms(r):
    from shared.duo.records import record_time_ms

    return record_time_ms(r)


def read_all(duo, **kwargs):
    return list(read_window(duo, MINTIME, MAXTIME, now_ms=NOW_MS, **kwargs))


def ids(pages):
    return [item["telephony_id"] for page in pages for item in page.items]


def spread(count, start=MINTIME + 1000, step=1000):
    return [record(start + i * step, i) for i in range(count)]


def test_empty_window_is_one_request_and_one_empty_page():
    duo = ScriptedDuo([])
    assert read_all(duo) == [Page([], None, total=DuoTotal(0))]
    assert len(duo.requests) == 1


@pytest.mark.parametrize("last_offset", ["absent", "null"])
def test_exactly_1000_records(last_offset):
    records = spread(1000)
    duo = ScriptedDuo(records, last_offset=last_offset)
    pages = read_all(duo)
    assert ids(pages) == [r["telephony_id"] for r in records]
    assert [page.next_offset for page in pages] == [None]


def test_1001_records_take_two_pages_with_the_same_window_on_each():
    records = spread(1001)
    duo = ScriptedDuo(records)
    pages = read_all(duo)
    assert [len(page.items) for page in pages] == [1000, 1]
    assert ids(pages) == [r["telephony_id"] for r in records]
    assert pages[0].next_offset == f"{_ms(records[999])},{records[999]['telephony_id']}"
    assert pages[1].next_offset is None
    for request in duo.requests:
        assert request["mintime"] == str(MINTIME) and request["maxtime"] == str(MAXTIME)
        assert request["limit"] == str(PAGE_LIMIT) and request["sort"] == "ts:asc"
    assert "next_offset" not in duo.requests[0]
    assert duo.requests[1]["next_offset"] == pages[0].next_offset


@pytest.mark.parametrize("repeat", [False, True], ids=["token-not-repeated", "token-repeated"])
def test_every_record_once_whether_or_not_the_token_event_repeats(repeat):
    records = spread(2500)
    pages = read_all(ScriptedDuo(records, repeat_token_event=repeat))
    assert ids(pages) == [r["telephony_id"] for r in records]
    assert sum(page.dropped for page in pages) == (2 if repeat else 0)


def test_many_events_in_one_millisecond_across_a_page_boundary():
    burst_ms = MINTIME + 5000
    records = spread(990) + [record(burst_ms + 10**6, 10_000 + i, micro=i) for i in range(30)]
    records += [record(burst_ms + 2 * 10**6, 20_000 + i) for i in range(5)]
    records.sort(key=lambda r: (r["ts"], r["telephony_id"]))
    for repeat in (False, True):
        pages = read_all(ScriptedDuo(records, repeat_token_event=repeat))
        assert ids(pages) == [r["telephony_id"] for r in records]


def test_resuming_from_a_token_continues_right_after_the_page():
    records = spread(2500)
    first = read_all(ScriptedDuo(records))
    for repeat in (False, True):
        duo = ScriptedDuo(records, repeat_token_event=repeat)
        rest = read_all(duo, next_offset=first[0].next_offset)
        assert ids(rest) == [r["telephony_id"] for r in records[1000:]]
        assert duo.requests[0]["next_offset"] == first[0].next_offset


def test_records_outside_the_half_open_window_are_dropped():
    # [MINTIME, MAXTIME): a record in MAXTIME's millisecond belongs to the next window, at
    # whatever microsecond, so adjacent windows never both keep it, nor both miss it.
    records = [
        record(MINTIME - 1, 1, micro=999),
        record(MINTIME, 2),
        record(MAXTIME - 1, 3, micro=999),
        record(MAXTIME, 4),
        record(MAXTIME, 5, micro=500),
        record(MAXTIME + 1, 6),
    ]

    class Sloppy(ScriptedDuo):
        def get(self, path, params, parse):
            return parse({"items": self.records, "metadata": {}})

    pages = read_all(Sloppy(records))
    assert ids(pages) == [records[1]["telephony_id"], records[2]["telephony_id"]]
    assert pages[0].dropped == 4


@pytest.mark.parametrize(
    ("mintime", "maxtime", "complaint"),
    [
        (MINTIME, MINTIME, "empty or inverted"),
        (MAXTIME, MINTIME, "empty or inverted"),
        (NOW_MS - 181 * 24 * HOUR, MAXTIME, "180-day"),
        (MINTIME, NOW_MS - 60_000, "now - 2 min"),
        (MINTIME // 1000, MAXTIME, "seconds"),
    ],
)
def test_windows_duo_would_refuse_are_refused_before_any_request(mintime, maxtime, complaint):
    duo = ScriptedDuo(spread(3))
    with pytest.raises(WindowError, match=complaint):
        list(read_window(duo, mintime, maxtime, now_ms=NOW_MS))
    assert duo.requests == []


def test_a_token_that_does_not_move_over_new_records_is_an_error_not_a_loop():
    token = f"{MINTIME + 5},{record(MINTIME + 5, 1)['telephony_id']}"

    class Stuck(ScriptedDuo):
        def get(self, path, params, parse):
            self.requests.append(params)
            if len(self.requests) > 3:
                raise AssertionError("the reader kept asking for the same page")
            # New records every time, and the same token: following it would never end.
            fresh = record(MINTIME + 5 + len(self.requests), len(self.requests))
            return parse({"items": [fresh], "metadata": {"next_offset": token}})

    duo = Stuck([])
    with pytest.raises(DuoProtocolError, match="paging token"):
        read_all(duo)
    assert len(duo.requests) == 2


def test_an_empty_page_that_hands_the_token_back_ends_the_window():
    # Some servers answer the page after the last one with no items and the same token.
    items = [record(MINTIME + n, n) for n in range(3)]
    token = f"{MINTIME + 2},{items[-1]['telephony_id']}"

    class EchoesAtTheEnd(ScriptedDuo):
        def get(self, path, params, parse):
            self.requests.append(params)
            if len(self.requests) > 3:
                raise AssertionError("the reader kept asking after the window ended")
            if "next_offset" not in params:
                return parse({"items": items, "metadata": {"next_offset": token}})
            return parse({"items": [], "metadata": {"next_offset": params["next_offset"]}})

    duo = EchoesAtTheEnd([])
    pages = list(read_window(duo, MINTIME, MAXTIME, now_ms=NOW_MS))
    assert [len(page.items) for page in pages] == [3, 0]
    assert pages[-1].next_offset is None
    assert len(duo.requests) == 2


def test_an_id_repeated_within_one_page_is_kept_once():
    first, second = record(MINTIME + 1000, 1), record(MINTIME + 2000, 2)
    again = dict(first, phone="+12125550199")  # the same telephony_id, even with other fields

    class Repeating(ScriptedDuo):
        def get(self, path, params, parse):
            return parse({"items": self.records, "metadata": {}})

    pages = read_all(Repeating([first, again, second]))
    assert pages == [Page([first, second], None, dropped=1)]


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        ({"metadata": {}}, DuoTransientError),
        ({"items": "nope", "metadata": {}}, DuoTransientError),
        # Duo's data itself: asked again, it answers the same, so the window is at fault.
        ({"items": [{"ts": "2027-01-15T08:00:00.000000+00:00"}], "metadata": {}}, DuoProtocolError),
        ({"items": [{"telephony_id": "a", "ts": "yesterday"}], "metadata": {}}, DuoProtocolError),
        ({"items": [], "metadata": {"next_offset": 17}}, DuoProtocolError),
    ],
    ids=["no-items", "items-not-list", "no-id", "bad-ts", "token-not-string"],
)
def test_garbled_answers_and_broken_data_are_errors_naming_the_problem(response, kind):
    class Garbled(ScriptedDuo):
        def get(self, path, params, parse):
            return parse(response)

    with pytest.raises(kind, match="Duo") as raised:
        read_all(Garbled([]))
    assert type(raised.value) is kind


@pytest.mark.parametrize(
    ("metadata", "total"),
    [
        ({"total_objects": 3}, 3),
        ({"total_objects": 0}, 0),
        ({"total_objects": {"relation": "eq", "value": 12}}, 12),
        ({"total_objects": {"relation": "gte", "value": 10000}}, None),
        ({"total_objects": True}, None),
        ({"total_objects": -1}, None),
        ({"total_objects": "3"}, None),
        ({}, None),
    ],
)
def test_only_an_exact_total_is_trusted(metadata, total):
    # Duo's samples give an integer; one of its docstrings a {"relation", "value"} pair.
    assert exact_total({"items": [], "metadata": metadata}) == total


def test_a_span_is_counted_with_one_small_request():
    duo = ScriptedDuo([record(MINTIME + n, n) for n in range(5)])
    assert count_records(duo, MINTIME, MAXTIME, now_ms=NOW_MS) == 5
    (params,) = duo.requests
    assert (params["limit"], params["mintime"], params["maxtime"]) == (
        "1",
        str(MINTIME),
        str(MAXTIME),
    )


def test_a_last_page_repeating_only_its_tokens_event_with_the_same_token_ends_the_window():
    # A server whose pages repeat their token's event and whose last page hands the token back
    # answers past the end with that one event again: nothing new, so the window is done.
    items = [record(MINTIME + n, n) for n in range(3)]
    token = f"{MINTIME + 2},{items[-1]['telephony_id']}"

    class RepeatsAndEchoes(ScriptedDuo):
        def get(self, path, params, parse):
            self.requests.append(params)
            if "next_offset" not in params:
                return parse({"items": items, "metadata": {"next_offset": token}})
            return parse({"items": items[-1:], "metadata": {"next_offset": token}})

    duo = RepeatsAndEchoes([])
    pages = list(read_window(duo, MINTIME, MAXTIME, now_ms=NOW_MS))
    assert [len(page.items) for page in pages] == [3, 0]
    assert pages[-1].next_offset is None


def test_a_paging_token_longer_than_a_record_batch_keeps_is_refused_naming_its_length():
    # Kept in every record batch and marker: one too long would make a batch the writer can
    # never accept, so it is refused where it is read, as broken data.
    ok = parse_page({"items": [], "metadata": {"next_offset": "x" * MAX_TOKEN_LENGTH}})
    assert ok == ([], "x" * MAX_TOKEN_LENGTH, None)
    with pytest.raises(DuoProtocolError, match=f"token of {MAX_TOKEN_LENGTH + 1} characters"):
        parse_page({"items": [], "metadata": {"next_offset": "x" * (MAX_TOKEN_LENGTH + 1)}})
