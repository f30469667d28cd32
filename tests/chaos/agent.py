"""A real agent process for the chaos tests: records events and reports what it did.

    python -m tests.chaos.agent --bootstrap HOST:PORT --spool DIR --count N [--durability spool]
        [--fsize-limit BYTES] [--size BYTES] [--tag TAG] [--hold]

Prints ``recorded <i>`` after each ``record_experience`` call returned (line-buffered,
so a parent that SIGKILLs it knows which calls had returned), then, unless ``--hold``,
closes the client and prints one JSON line ``{"stats": ..., "errors": ...}``: every
exception a call or ``close()`` raised, by type.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import signal
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--spool", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--durability", default="memory")
    ap.add_argument("--fsize-limit", type=int, default=0, help="RLIMIT_FSIZE: a full disk without root")
    ap.add_argument("--size", type=int, default=200, help="bytes of output text per event")
    ap.add_argument("--tag", default="chaos")
    ap.add_argument("--rate", type=float, default=0.0, help="events per second (0: as fast as possible)")
    ap.add_argument("--hold", action="store_true", help="after recording, wait to be killed")
    a = ap.parse_args()
    if a.fsize_limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (a.fsize_limit, a.fsize_limit))

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    from agentgym import AgentGym

    gym = AgentGym(a.bootstrap, tenant_id="chaos", agent_id=a.tag, spool_dir=a.spool, durability=a.durability,
                   delivery_timeout_s=30, spool_replay_interval_s=0.5)
    errors: dict[str, int] = {}
    text = "x" * a.size
    t0 = time.monotonic()
    for i in range(a.count):
        try:
            gym.record_experience(trace_id=f"{a.tag}-{i}", event_id=f"{a.tag}-{i}", input="q", output=text,
                                  model_name="m", model_version="v1", latency_ms=1.0)
        except Exception as exc:  # the test counts these: there must be none
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        print(f"recorded {i}", flush=True)
        if a.rate:
            delay = t0 + (i + 1) / a.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    if a.hold:
        print("held", flush=True)
        while True:
            time.sleep(1)
    try:
        gym.close(timeout_s=2)
    except Exception as exc:
        errors["close:" + type(exc).__name__] = 1
    print(json.dumps({"stats": gym.stats, "errors": errors}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
