"""Rate-limit counters kept in the process, for `RATELIMIT_STORAGE_URI=inprocess://`.

The `memory://` storage of the `limits` library runs a timer thread that walks every counter
it holds a hundred times a second. Every client address leaves two counters behind (a
minute and an hour), so during a rush of signers that walk grows to hundreds of thousands of
keys and takes most of a core from each web worker. This storage does the same job for the
fixed-window strategy without a thread: counters expire when they are next read, and each
write first drops the counters whose windows ended, oldest first, from a heap. The work per
request stays constant however many clients have come by.

Like `memory://`, the counts belong to one process; use Redis to share them between workers.
"""

from __future__ import annotations

import heapq
import threading
import time

from limits.storage import Storage


class InProcessStorage(Storage):
    """Fixed-window counters in a dict, expired lazily (see the module's docstring)."""

    STORAGE_SCHEME = ["inprocess"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: object):
        self._counters: dict[str, tuple[int, float]] = {}
        self._ends: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        super().__init__(uri, wrap_exceptions=wrap_exceptions)

    @property
    def base_exceptions(self) -> type[Exception]:
        """No storage errors can happen in a dict."""
        return ValueError

    def _drop_ended(self, now: float) -> None:
        while self._ends and self._ends[0][0] <= now:
            _, key = heapq.heappop(self._ends)
            found = self._counters.get(key)
            if found is not None and found[1] <= now:
                del self._counters[key]

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add `amount` to the counter, starting a window of `expiry` seconds if none is open."""
        now = time.time()
        with self._lock:
            self._drop_ended(now)
            count, ends = self._counters.get(key, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + expiry
                heapq.heappush(self._ends, (ends, key))
            count += amount
            self._counters[key] = (count, ends)
            return count

    def get(self, key: str) -> int:
        """The counter in its open window; 0 once the window ended."""
        count, ends = self._counters.get(key, (0, 0.0))
        return count if ends > time.time() else 0

    def get_expiry(self, key: str) -> float:
        """When the counter's window ends (now, when none is open)."""
        now = time.time()
        _, ends = self._counters.get(key, (0, 0.0))
        return ends if ends > now else now

    def check(self) -> bool:
        """Always reachable."""
        return True

    def reset(self) -> int | None:
        """Forget every counter; returns how many there were."""
        with self._lock:
            number = len(self._counters)
            self._counters.clear()
            self._ends.clear()
            return number

    def clear(self, key: str) -> None:
        """Forget one counter."""
        with self._lock:
            self._counters.pop(key, None)

    def __len__(self) -> int:
        return len(self._counters)
