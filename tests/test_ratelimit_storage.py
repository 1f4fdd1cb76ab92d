"""The in-process rate-limit storage: fixed windows that end on time, counters dropped after."""

from __future__ import annotations

import time

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from petitions.ratelimit_storage import InProcessStorage


def test_the_uri_names_this_storage(app):
    assert isinstance(storage_from_string("inprocess://"), InProcessStorage)
    assert app.config["RATELIMIT_STORAGE_URI"] == "inprocess://"


def test_a_limit_refuses_past_its_count_until_the_window_ends():
    limiter = FixedWindowRateLimiter(InProcessStorage())
    limit = parse("3 per 1 second")
    assert [limiter.hit(limit, "10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert limiter.hit(limit, "10.0.0.2")  # another client has its own count
    reset, remaining = limiter.get_window_stats(limit, "10.0.0.1")
    assert remaining == 0
    assert time.time() < reset <= time.time() + 1
    time.sleep(1.1)
    assert limiter.hit(limit, "10.0.0.1")
    assert limiter.get_window_stats(limit, "10.0.0.1")[1] == 2


def test_counters_of_ended_windows_are_dropped_by_the_next_write():
    storage = InProcessStorage()
    for number in range(500):
        storage.incr(f"client-{number}", 1)
    assert len(storage) == 500
    assert storage.get("client-7") == 1
    time.sleep(1.1)
    assert storage.get("client-7") == 0
    storage.incr("late", 60)
    assert len(storage) == 1
    storage.clear("late")
    assert storage.get("late") == 0
    assert storage.reset() == 0
