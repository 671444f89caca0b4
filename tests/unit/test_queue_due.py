"""When the async dispatcher should wake next: events being delivered do not count (they are
due already; counting them made the dispatcher poll without pause while one ran)."""

from __future__ import annotations

import time

from dayfly.stores.db import Database
from dayfly.stores.queue import EventQueue


async def test_next_due_leaves_out_the_events_in_flight(tmp_path):
    db = Database(tmp_path / "q.db")
    try:
        q = EventQueue(db)
        assert await q.next_due() is None
        first = await q.put("fn", None, b"{}")
        second = await q.put("fn", None, b"{}")
        q.in_flight.update({first, second})
        assert await q.next_due() is None  # both are being delivered: nothing to wake for
        assert await q.due(10) == []  # nothing due that is not in flight
        q.in_flight.discard(second)
        assert await q.next_due() <= time.time()  # the one not in flight is due now
    finally:
        db.close()
