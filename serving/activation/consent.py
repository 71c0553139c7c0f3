"""Who may be messaged on which channel, right now: the one rule every audience, plan and export applies.

What counts as consent, per channel (the latest consent event on the channel wins, a revocation winning a
tie; `features.profile.wide` computes it for each build):

| channel | granted by | withdrawn by | also needs |
|---|---|---|---|
| email | `subscribe`, `consent_granted` | `unsubscribe`, `consent_revoked` | an email address |
| sms | `consent_granted`, `subscribe` | `consent_revoked`, `unsubscribe` | a mobile phone |
| zalo_oa | `follow` (also `consent_granted`) | `unfollow` (also `consent_revoked`) | a Zalo user id by OA |
| zalo_zns | `consent_granted` on `zalo_zns` | `consent_revoked` on `zalo_zns` | a mobile phone |

ZNS goes by phone to people who have Zalo and agreed to hear from the shop (Zalo's rule): agreement must be
recorded as a `consent_granted` event on channel `zalo_zns` (e.g. a checkbox at checkout); following the OA
is not ZNS consent. Whether a phone has Zalo is learnt, not known: see `reach`.

Two things override the build, because they cannot wait for the next one:
- a withdrawal that arrived after the build (`features.contacts.revocations_since`) removes consent at once;
- an erased person is gone from the build, and their identifiers are on the suppression list
  (`Suppression`), so they never come back through a later import of the same phone or email.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.identity.reports import identifiers_wide
from serving.activation.policy import PLAN_CHANNELS

# The identifier a channel sends to, and what it must look like.
ADDRESS: dict[str, str] = {"email": "email", "sms": "phone", "zalo_oa": "zalo_user_id", "zalo_zns": "phone"}
_MOBILE = r"^\+84[35789]\d{8}$"
# Pseudo-sends pulling a customer's delivery rate to the channel's: two failed sends to a new number are
# not yet proof that it is dead.
REACH_PRIOR_SENDS = 2.0


def _digest(id_type: str, value: str) -> str:
    return hashlib.sha256(f"{id_type}:{value}".encode()).hexdigest()


class Suppression:
    """SHA-256 digests of erased people's identifiers (`id_type:value`), one per line in a file of the
    workspace: enough to recognise them again, not enough to contact or name them."""

    def __init__(self, path: Path):
        self.path = path

    def add(self, identity: pd.DataFrame) -> int:
        """Suppress every (id_type, id_value) of `identity`; returns how many digests were new."""
        known = self.digests()
        new = sorted({_digest(t, v) for t, v in zip(identity["id_type"], identity["id_value"])} - known)
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write("".join(f"{d}\n" for d in new))
        return len(new)

    def digests(self) -> set[str]:
        if not self.path.exists():
            return set()
        return {line.strip() for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()}

    def customers(self, identity: pd.DataFrame) -> set[str]:
        """The customers of `identity` that carry any suppressed identifier."""
        digests = self.digests()
        if not digests or identity.empty:
            return set()
        hit = [_digest(t, v) in digests for t, v in zip(identity["id_type"], identity["id_value"])]
        return set(identity.loc[hit, "customer_id"])


@dataclass
class Reach:
    """Per customer (index) and channel (columns of each frame): may we send (`allowed`), to which address
    (`address`), and how likely the message is delivered (`delivery`)."""

    allowed: pd.DataFrame
    address: pd.DataFrame
    delivery: pd.DataFrame
    identifiers: pd.DataFrame  # identifiers_wide of the customers


def reach(profiles: pd.DataFrame, identity: pd.DataFrame, revoked: pd.DataFrame, suppressed: set[str],
          channels: tuple[str, ...] = PLAN_CHANNELS) -> Reach:
    """Consent, address and delivery odds of every customer of `profiles` on `channels`.

    `revoked`: withdrawals since the build (customer_id, channel). Delivery is the customer's delivered /
    sent over 90 days, shrunk to the channel's rate (`REACH_PRIOR_SENDS`); a channel whose deliveries are not
    logged counts as delivered. For ZNS that is how "has Zalo" is learnt: a phone without Zalo never gets a
    delivery.
    """
    ids = identifiers_wide(identity).reindex(profiles.index)
    allowed, address, delivery = {}, {}, {}
    for channel in channels:
        field = ADDRESS[channel]
        raw = ids[field] if field in ids.columns else pd.Series(None, index=profiles.index, dtype=object)
        first = raw.astype(object).where(raw.notna(), None).map(lambda v: v.split("|")[0] if v else None)
        usable = first.notna()
        if ADDRESS[channel] == "phone":
            usable &= first.fillna("").str.match(_MOBILE)
        consent = profiles.get(f"consent_{channel}", pd.Series(False, index=profiles.index)).fillna(False)
        gone = set(revoked.loc[revoked["channel"] == channel, "customer_id"]) | suppressed
        allowed[channel] = consent.astype(bool) & usable & ~profiles.index.isin(list(gone))
        address[channel] = first.where(usable, None)
        delivery[channel] = _delivery(profiles, channel)
    frame = lambda d: pd.DataFrame(d, index=profiles.index)  # noqa: E731
    return Reach(frame(allowed), frame(address), frame(delivery), ids)


def _delivery(profiles: pd.DataFrame, channel: str) -> pd.Series:
    sent = profiles.get(f"n_messages_sent_90d_{channel}", pd.Series(0.0, index=profiles.index)).fillna(0)
    got = profiles.get(f"n_messages_delivered_90d_{channel}")
    if got is None or got.fillna(0).sum() == 0:
        return pd.Series(1.0, index=profiles.index)
    got = got.fillna(0)
    rate = float(np.clip(got.sum() / max(sent.sum(), 1.0), 0.0, 1.0))
    k = REACH_PRIOR_SENDS
    return ((np.minimum(got, sent) + k * rate) / (sent + k)).astype(float)
