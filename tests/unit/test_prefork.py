"""The zygote's last steps before it freezes its heap (dayfly/runtime/prefork.py)."""

import sys

import pytest

from dayfly.runtime import prefork


@pytest.mark.skipif(not hasattr(sys, "_debugmallocstats"), reason="CPython's allocator only")
def test_fill_pools_takes_the_free_slots_of_pools_in_use():
    before = sum(n for _, n in prefork._free_slots())
    assert before > 0
    ballast = prefork.fill_pools()
    after = sum(n for _, n in prefork._free_slots())
    assert ballast and after < before / 4, (before, after)
