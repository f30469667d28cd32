"""The SDK's random ids: read from os.urandom in blocks, never repeated, not even by a forked child."""

from __future__ import annotations

import os
import re
import threading

from agentgym.producers.client import _RANDOM, _new_id


def test_ids_are_hex_of_the_right_length_and_distinct_across_threads() -> None:
    found: list[list[str]] = [[] for _ in range(4)]

    def take(out: list[str]) -> None:
        out.extend(_RANDOM.hex64() for _ in range(3000))  # several refills of the pool, taken by four threads at once

    threads = [threading.Thread(target=take, args=(out,)) for out in found]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for out in found for i in out]
    assert all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids)
    assert len(set(ids)) == len(ids) == 12000
    assert re.fullmatch(r"[0-9a-f]{32}", _new_id())


def test_a_forked_child_does_not_hand_out_its_parents_next_ids() -> None:
    _RANDOM.hex64()  # the pool now holds ids that the parent will hand out next
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, "".join(_RANDOM.hex64() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = f.read()
    os.waitpid(pid, 0)
    child_ids = {child[i:i + 64] for i in range(0, len(child), 64)}
    parent_ids = {_RANDOM.hex64() for _ in range(50)}
    assert len(child_ids) == 50 and not child_ids & parent_ids
