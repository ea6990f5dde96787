"""When the blob trigger lists its watched prefix whole.

A listing costs in proportion to the blobs kept under the prefix (the
inputs stay after processing, as in the classic workflow), so listing
every poll made an idle host's CPU grow with them. ``ListingSchedule``
spaces the full listings by their measured cost instead: the next one is
due ``cost / duty`` seconds after the last (a listing then takes at most
that share of the time, however many blobs are kept), never sooner than
the host's ``poll_seconds`` and never later than ``LONGEST_S``. The duty
is ``DUTY`` (2%) while MinIO's event stream finds the blobs and the
listings only catch what it missed, ``POLLING_DUTY`` (10%) where listing
is the only way (Azure Storage, AWS S3), since there every blob waits for
one. A prefix of a few hundred blobs is still listed every poll; 1,000
blobs on MinIO every second or two.

Besides the interval, a listing is due:

- at start, and whenever the event stream (re)connects (events while it
  was away are lost);
- ``QUIET_S`` after the stream told of something and then fell quiet
  (MinIO holds the last events of a burst back: see ``s3listen``), at most
  once per ``cost / QUIET_DUTY`` seconds.

The cost is the listing's wall time (smoothed), which counts the storage
server's work and the waits of a busy machine as well as this process's
parsing: a loaded machine lists less often.
"""

from __future__ import annotations

DUTY = 0.02
#: Without an event stream every blob waits for a listing: they may take more of the time.
POLLING_DUTY = 0.1
QUIET_DUTY = 0.1
QUIET_S = 0.3
LONGEST_S = 300.0


class ListingSchedule:
    def __init__(
        self, poll_seconds: float, longest: float = LONGEST_S, duty: float = POLLING_DUTY
    ) -> None:
        self.poll_seconds = poll_seconds
        self.duty = duty  # DUTY while an event stream is in use
        self.longest = max(longest, poll_seconds)
        self.cost = 0.0  # smoothed wall seconds of a full listing
        self.last_start = float("-inf")  # time.monotonic() of the last listing's start
        self.listings = 0
        self._asked = True  # the start listing

    def interval(self) -> float:
        return min(max(self.cost / self.duty, self.poll_seconds), self.longest)

    def ask(self) -> None:
        """A listing as soon as the trigger next looks (the stream has just connected)."""
        self._asked = True

    def due(self, now: float, last_event: float) -> str | None:
        """Why a listing is due now (``"asked"``, ``"interval"``, ``"quiet"``), or None.

        ``last_event``: time.monotonic() of the stream's last event (0: none)."""
        if self._asked:
            return "asked"
        since = now - self.last_start
        if since >= self.interval():
            return "interval"
        if (
            last_event > self.last_start
            and now - last_event >= QUIET_S
            and since >= max(self.cost / QUIET_DUTY, self.poll_seconds)
        ):
            return "quiet"
        return None

    def started(self, now: float) -> None:
        self._asked = False
        self.last_start = now

    def finished(self, seconds: float) -> None:
        self.listings += 1
        self.cost = seconds if self.listings == 1 else 0.5 * self.cost + 0.5 * seconds
