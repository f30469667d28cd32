"""Stable consumer-group identities for workers: a restarted worker takes its old place.

A worker killed with ``kill -9`` never leaves its consumer groups. With dynamic
membership the broker keeps the dead member until its session times out (librdkafka's
default is 45 s, Faust's 60 s) and only then rebalances: the restarted worker waited
about a minute before it inserted again. With static membership (KIP-345,
``group.instance.id``) the restarted worker rejoins under the same instance id and
takes the dead member's partitions at once, without a rebalance.

The instance id must be unique among live workers and the same across a restart, so a
worker claims the lowest free *slot* on its host: an advisory lock on
``<AGENTGYM_HOME>/worker-slots/<app id>-<n>.lock`` held for the life of the process.
A dead worker's lock is released by the kernel, so its successor gets the same slot;
two live workers on one host get different slots. The id is ``<host>-<app id>-<n>``,
or ``AGENTGYM_WORKER_ID`` when set (e.g. a StatefulSet pod name).

Slots are per ``AGENTGYM_HOME``: two workers with their own homes on one host can claim
the same slot, so each consumer's id also carries the worker's web URL (``faust_instance_id``;
the sink's is that id plus ``-sink``), which only one live process on a host can bind.

The cost of static membership: a member that stops for good is noticed only after the
session timeout, so the session timeouts are short (``SESSION_TIMEOUT_S``).
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import socket
from pathlib import Path

__all__ = ["claim_instance_id", "faust_instance_id", "web_host", "SESSION_TIMEOUT_S", "HEARTBEAT_INTERVAL_S"]

SESSION_TIMEOUT_S = 10.0
"""Consumer session timeout of the workers' consumers (the broker's minimum is 6 s)."""
HEARTBEAT_INTERVAL_S = 1.0

_claimed: dict[str, tuple[int, str]] = {}  # app id -> (lock fd, instance id), for the life of the process


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "worker"


def claim_instance_id(app_id: str, home: Path, worker_id: str | None = None, max_slots: int = 256) -> str:
    """This process's group instance id for ``app_id`` (the same on every call in one process).

    Args:
        app_id: the application (consumer groups are per application).
        home: ``AGENTGYM_HOME``; the slot locks live under ``home/worker-slots``.
        worker_id: an explicit id (``AGENTGYM_WORKER_ID``) instead of a slot.
        max_slots: how many workers one host may run for one application.
    """
    if app_id in _claimed:
        return _claimed[app_id][1]
    if worker_id:
        instance = f"{_slug(worker_id)}-{_slug(app_id)}"
        _claimed[app_id] = (-1, instance)
        return instance
    slots = Path(home) / "worker-slots"
    slots.mkdir(parents=True, exist_ok=True)
    for n in range(max_slots):
        fd = os.open(slots / f"{_slug(app_id)}-{n}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        instance = f"{_slug(socket.gethostname())}-{_slug(app_id)}-{n}"
        _claimed[app_id] = (fd, instance)
        return instance
    raise RuntimeError(f"more than {max_slots} workers of {app_id} on this host")


def faust_instance_id(instance: str, web_host: str, web_port: int) -> str:
    """The instance id of the Faust consumer: ``instance`` plus the worker's web URL.

    Faust's partition assignor checks that a member's assignment carries the URL the
    member has now (``assert metadata.url == str(self._url)``); a static member that
    rejoins with another URL would crash the worker, so a new URL is a new member.
    """
    return f"{instance}-{_slug(web_host)}-{web_port}"


def web_host(bind: str) -> str:
    """The host name in a worker's canonical URL: the bound address, or this machine's
    name when the server binds every interface."""
    try:
        unspecified = ipaddress.ip_address(bind).is_unspecified
    except ValueError:  # a host name
        return bind
    return socket.gethostname() if unspecified else bind
