"""The window state machine's operator rule: a stopped window put back."""

from __future__ import annotations

from shared.pipeline.windows import new_window, requeue


def test_a_window_put_back_after_a_complete_read_is_read_again_landing_only_what_is_missing():
    doc = new_window(0, 60_000, 0) | {"state": "quarantined", "pages": 5, "reread_from": 3}
    update = requeue(doc, now=1)
    assert (update["state"], update["reread_from"], update["updated_at_ms"]) == ("planned", 5, 0)


def test_a_window_put_back_mid_read_resumes_from_its_checkpoint():
    doc = new_window(0, 60_000, 0) | {"state": "failed", "pages": 2, "next_offset": "1,a"}
    update = requeue(doc, now=1)
    assert update["reread_from"] == 0 and "next_offset" not in update


def test_only_a_stopped_window_is_put_back():
    assert requeue(new_window(0, 60_000, 0), now=1) is None
