"""Who a simulated fleet's accounts are: their keys, hosts and ids, which MSP children refuse
the parent's keys, and how the records are spread over them. Deterministic per seed.

Accounts with their own keys (``accounts``) come first, then the MSP parent's children
(``msp_children``), which have no keys of their own: they are read with the parent's. A share
of the children (``refused_share``, rounded to whole children) answer the parent's keys as Duo
answers for a child in another Duo deployment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from shared.duo.secret import Secret

Distribution = Literal["even", "zipf"]
RateLimitScope = Literal["account", "parent"]
# Zipf's exponent: with 100 accounts the busiest holds about a quarter of the records and
# the quietest about a thousandth, as in fleets where most accounts rarely send a passcode.
ZIPF_EXPONENT = 1.2


@dataclass(frozen=True)
class FleetSpec:
    accounts: int = 0  # accounts read with their own keys
    msp_children: int = 0  # an MSP parent's children, read with the parent's keys
    refused_share: float = 0.0  # of the children: those that refuse the parent's keys
    distribution: Distribution = "even"
    rate_limit_scope: RateLimitScope = "account"

    def __post_init__(self) -> None:
        if self.accounts < 0 or self.msp_children < 0:
            raise ValueError("accounts and msp_children must be >= 0")
        if not 0.0 <= self.refused_share <= 1.0:
            raise ValueError("refused_share must be within [0, 1]")
        if self.distribution not in ("even", "zipf"):
            raise ValueError("distribution must be 'even' or 'zipf'")
        if self.rate_limit_scope not in ("account", "parent"):
            raise ValueError("rate_limit_scope must be 'account' or 'parent'")

    @property
    def size(self) -> int:
        return self.accounts + self.msp_children

    @property
    def refused(self) -> int:
        """How many children refuse the parent's keys."""
        return round(self.refused_share * self.msp_children)


@dataclass(frozen=True)
class SimAccount:
    index: int
    account_id: str
    name: str
    host: str  # its api_hostname
    ikey: str | None  # its own keys; None for an MSP child, read with the parent's
    skey: Secret | None
    refused: bool = False  # an MSP child that refuses the parent's keys

    @property
    def is_child(self) -> bool:
        return self.ikey is None

    def describe(self, records: int) -> dict[str, object]:
        """For the ground truth's account list: everything a checker needs to read it."""
        return {
            "account_id": self.account_id,
            "name": self.name,
            "api_hostname": self.host,
            "ikey": self.ikey,
            # A simulator's keys are demo values: handing them to a checker is the point.
            "skey": self.skey.reveal() if self.skey else None,
            "msp_child": self.is_child,
            "refused": self.refused,
            "records": records,
        }


def fleet_accounts(spec: FleetSpec, seed: int) -> list[SimAccount]:
    rng = random.Random(f"duo-sim-fleet:{seed}")
    refused = set(rng.sample(range(spec.msp_children), spec.refused))
    accounts = []
    for index in range(spec.size):
        number = index + 1
        child = index >= spec.accounts
        accounts.append(
            SimAccount(
                index=index,
                account_id=f"DASIM{number:015d}",
                name=f"Simulated {'child' if child else 'account'} {number}",
                host=f"api-sim{number:05d}.duosecurity.com",
                ikey=None if child else f"DISIMACCOUNT{number:08d}",
                skey=None if child else Secret(f"{rng.getrandbits(160):040x}"),
                refused=child and index - spec.accounts in refused,
            )
        )
    return accounts


def shares(spec: FleetSpec, seed: int) -> list[float]:
    """Each account's share of the records, summing to 1: equal, or Zipf's law over the
    accounts in a seeded order, so that the busy few are not always the first."""
    if spec.size == 0:
        return []
    if spec.distribution == "even":
        return [1.0 / spec.size] * spec.size
    ranks = list(range(1, spec.size + 1))
    random.Random(f"duo-sim-fleet-ranks:{seed}").shuffle(ranks)
    weights = [rank**-ZIPF_EXPONENT for rank in ranks]
    total = sum(weights)
    return [weight / total for weight in weights]


def spread(total: int, account_shares: list[float]) -> list[int]:
    """``total`` records over the accounts by their shares, in whole records that add up to
    ``total`` (the largest remainders get the records left over)."""
    exact = [total * share for share in account_shares]
    counts = [int(value) for value in exact]
    left = total - sum(counts)
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[:left]:
        counts[i] += 1
    return counts
