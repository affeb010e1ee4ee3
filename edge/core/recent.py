"""What the lane approved a moment ago, for the policy's next judgements.

Two memories, both pure (the lane gives the time):

- replays: a credential approved at this lane within ``[policy]
  replay_window_s`` is replayed if shown again. Recognised by
  :attr:`Credential.ref` (the issuer and id of a declaration or DCC), not by
  the payload bytes: re-encoding a signed code changes its bytes. An ID card
  has no ref: it is the person, not the permission.
- vouchers: the identities (``Format.voucher``) in a party the policy approved
  within the vehicle group window, with how many proxy codes each has vouched
  for since. A parent's code approved, then their child's proxy code shown just
  after, is the same family; nobody vouches for more than
  :data:`~edge.core.policy.MAX_PROXIES`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from edge.core.model import PassageDraft
from edge.core.party import Party
from edge.core.policy import MAX_PROXIES
from edge.scan import registry


class RecentApprovals:
    """Refs and vouchers of recent approvals. ``replay_window_s`` 0 turns replay checks
    off; ``vouch_window_s`` is the vehicle group window (``[lane] group_s``)."""

    def __init__(self, replay_window_s: float, vouch_window_s: float) -> None:
        self.replay_window = timedelta(seconds=replay_window_s)
        self.vouch_window = timedelta(seconds=vouch_window_s)
        self._approved: dict[str, datetime] = {}  # Credential.ref -> last approval
        self._vouchers: dict[str, tuple[datetime, int]] = {}  # identity -> (since, used)

    def remember(self, ref: str, approved_at: datetime) -> None:
        """A credential (its ``ref``) approved before a restart, for replay checks."""
        if self._approved.get(ref, approved_at) <= approved_at:
            self._approved[ref] = approved_at

    def approved(self, draft: PassageDraft) -> None:
        """A passage was approved: remember its credentials' refs, and (when the policy
        recommended it) who in it may vouch for a proxy code shown next, and which
        vouchers it used."""
        for c in draft.credentials:
            if c.ref is not None and self.replay_window:  # 0: off, nothing to remember
                self._approved[c.ref] = draft.ts
        if draft.verdict != "approve":
            return  # an officer's approval of what the policy referred vouches for nobody
        for c in draft.credentials:
            fmt = registry.get(c.kind)
            if fmt is None or c.claims is None:
                continue
            if (key := fmt.voucher(c.claims)) is not None and key not in self._vouchers:
                self._vouchers[key] = (draft.ts, 0)
            if (by := fmt.vouched_by(c.claims)) is not None and by in self._vouchers:
                since, used = self._vouchers[by]
                self._vouchers[by] = (since, used + 1)

    def replayed(self, party: Party, now: datetime) -> list[str]:
        """The refs of ``party``'s codes approved within the replay window before ``now``."""
        window = self.replay_window
        if window:
            self._approved = {s: t for s, t in self._approved.items() if now - t <= window}
        return [  # a window of 0 is off: nothing is a replay
            c.ref
            for c in party.credentials
            if window and c.ref is not None and c.ref in self._approved
        ]

    def vouchers(self, now: datetime) -> list[str]:
        """The identities that may still vouch for a proxy code at ``now``."""
        self._vouchers = {
            k: v
            for k, v in self._vouchers.items()
            if timedelta(0) <= now - v[0] <= self.vouch_window
        }
        return [k for k, (_, used) in self._vouchers.items() if used < MAX_PROXIES]
