"""The live stream's per-subscriber bound: a client that falls QUEUE events behind is ended, not buffered without end."""

from __future__ import annotations

import asyncio

from agentgym.gateway.streams import QUEUE, Subscription


def test_a_subscriber_too_far_behind_gets_the_end_of_its_stream() -> None:
    async def scenario() -> list[object]:
        sub = Subscription("acme:exp", asyncio.get_running_loop())
        for i in range(QUEUE + 5):
            sub.offer(("stats", {"i": i}))
        assert sub.overflowed and sub.queue.qsize() == QUEUE + 1
        items = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        sub.offer(("stats", {"i": -1}))  # nothing more is queued once it overflowed
        assert sub.queue.empty()
        return items

    items = asyncio.run(scenario())
    assert items[:QUEUE] == [("stats", {"i": i}) for i in range(QUEUE)] and items[QUEUE] is None


def test_a_subscriber_that_keeps_up_is_never_ended() -> None:
    async def scenario() -> bool:
        sub = Subscription("acme:exp", asyncio.get_running_loop())
        for i in range(3 * QUEUE):
            sub.offer(("decision", {"i": i}))
            assert sub.queue.get_nowait() == ("decision", {"i": i})
        return sub.overflowed

    assert asyncio.run(scenario()) is False
