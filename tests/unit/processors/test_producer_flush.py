"""The worker's producer flush drains its buffer before Faust commits (processors/producer_flush.py).

Faust's own flush returns once a message takes more than 0.1 s to leave the buffer; the
offsets of the events that produced the rest were then committed, and a worker killed at
that moment lost them. Here each message takes 0.25 s to hand over (a loaded machine).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from faust.transport.producer import ProducerBuffer

from agentgym.processors.app import create_app
from agentgym.processors.producer_flush import install
from agentgym.processors.settings import ProcessorSettings


def _flush_with_slow_producer(tmp_path: Path, draining: bool, messages: int = 4) -> tuple[int, int]:
    """(messages handed to the producer when flush() returned, messages still buffered)."""
    app = create_app(ProcessorSettings(home=tmp_path, bootstrap_servers="127.0.0.1:1", processors=""))  # type: ignore[arg-type]
    sent: list[Any] = []

    async def main() -> tuple[int, int]:
        buffer = ProducerBuffer()
        buffer.app = app

        async def slow_publish(fut: Any) -> None:
            await asyncio.sleep(0.25)
            sent.append(fut)

        buffer._send_pending = slow_publish  # type: ignore[method-assign]
        if draining:
            install(buffer)
        await buffer.start()
        try:
            for i in range(messages):
                buffer.put(i)  # type: ignore[arg-type]
            await buffer.flush()
            return len(sent), buffer.size
        finally:
            while buffer.size:  # let the rest go before stopping
                await asyncio.sleep(0.05)
            await buffer.stop()

    return asyncio.run(main())


def test_fausts_own_flush_returns_with_messages_still_buffered(tmp_path: Path) -> None:
    sent, left = _flush_with_slow_producer(tmp_path, draining=False)
    assert sent < 4 and left > 0  # what the worker's flush replaces


def test_the_workers_flush_returns_only_once_everything_was_handed_over(tmp_path: Path) -> None:
    assert _flush_with_slow_producer(tmp_path, draining=True) == (4, 0)


def test_the_worker_app_gets_the_draining_flush(tmp_path: Path) -> None:
    app = create_app(ProcessorSettings(home=tmp_path, bootstrap_servers="127.0.0.1:1", processors=""))  # type: ignore[arg-type]
    assert app.producer.buffer.flush.__func__.__qualname__.startswith("install.")
