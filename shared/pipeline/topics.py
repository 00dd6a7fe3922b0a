"""The pipeline's Pub/Sub topic names, with the defaults every deployment starts from."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TopicNames:
    windows: str = "duo-telephony-windows"
    batches: str = "duo-telephony-batches"
    dead_letters: str = "duo-telephony-dead-letters"
    # The scheduler's run hands each slice of sources to the planners here (services/planner).
    plans: str = "duo-telephony-plans"

    @classmethod
    def with_suffix(cls, suffix: str) -> TopicNames:
        return cls(**{f.name: f"{f.default}-{suffix}" for f in fields(cls)})
