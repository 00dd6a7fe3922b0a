"""The pipeline's Pub/Sub topic names, with the defaults every deployment starts from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicNames:
    windows: str = "duo-telephony-windows"
    batches: str = "duo-telephony-batches"
    dead_letters: str = "duo-telephony-dead-letters"

    @classmethod
    def with_suffix(cls, suffix: str) -> TopicNames:
        return cls(*(f"{name}-{suffix}" for name in (cls.windows, cls.batches, cls.dead_letters)))
