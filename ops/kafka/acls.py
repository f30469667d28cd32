"""The data plane's principals (one per service) and the ACLs each gets.

The local broker with SASL/SCRAM (``KafkaBroker(sasl=...)``, ``agentgym kafka start
--sasl``) and ``compose.yaml`` use these principals; ``admin`` is the broker's super user
(topic creation, ACLs, the broker's own inter-broker traffic). What each service may do:

| principal | topics | consumer groups |
|---|---|---|
| ``sdk`` (agents) | write and describe ``gym-*``; read ``gym-experiments-v1`` | ``agentgym-follower-*`` |
| ``gateway`` | read, write, describe ``gym-*`` | ``agentgym-*`` |
| ``trainer`` | read, write, describe ``gym-*`` | ``agentgym-*`` |
| ``processors`` | every topic, every operation | every group |

The processors' grant is broad on purpose: Faust creates and owns its changelog and
repartition topics (named after the app id, which is configurable) and its consumer
group, and its admin client describes and creates topics at start. The ``sdk`` principal
cannot read what agents write, so a leaked agent credential exposes no other tenant's runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentgym.ops.exceptions import StackError
from agentgym.schemas.topics import TOPICS

__all__ = ["Grant", "SERVICE_GRANTS", "PRINCIPALS", "ADMIN", "generate_passwords", "apply_acls"]

ADMIN = "admin"
"""The super user: the broker's own principal and the one that creates topics and ACLs."""


@dataclass(frozen=True)
class Grant:
    """One ACL: ``operations`` on ``resource`` (``"topic"``/``"group"``) named ``name`` (a prefix with ``prefixed``)."""

    resource: str
    name: str
    operations: tuple[str, ...]
    prefixed: bool = True


_RW = ("READ", "WRITE", "DESCRIBE")
SERVICE_GRANTS: dict[str, tuple[Grant, ...]] = {
    "sdk": (
        Grant("topic", "gym-", ("WRITE", "DESCRIBE")),
        Grant("topic", TOPICS["experiments"].name, ("READ",), prefixed=False),
        Grant("group", "agentgym-follower-", ("READ",)),
    ),
    "gateway": (Grant("topic", "gym-", _RW), Grant("group", "agentgym-", ("READ",))),
    "trainer": (Grant("topic", "gym-", _RW), Grant("group", "agentgym-", ("READ",))),
    "processors": (Grant("topic", "*", ("ALL",), prefixed=False), Grant("group", "*", ("ALL",), prefixed=False)),
}
"""What each service principal may do (see the table above); ``admin`` is a super user."""

PRINCIPALS: tuple[str, ...] = (ADMIN, *SERVICE_GRANTS)
"""Every principal the SASL broker creates SCRAM credentials for."""


def generate_passwords(names: tuple[str, ...] = PRINCIPALS) -> dict[str, str]:
    """A fresh random password (32 url-safe characters) for each principal of ``names``."""
    return {name: secrets.token_urlsafe(24) for name in names}


def apply_acls(bootstrap_servers: str, admin_security: Mapping[str, Any],
               grants: Mapping[str, tuple[Grant, ...]] = SERVICE_GRANTS, timeout_s: float = 30.0) -> int:
    """Creates the ACL bindings of ``grants`` (allow, any host) as the super user; returns how many.

    Creating a binding that exists already is a no-op in Kafka, so this is idempotent.

    Raises:
        StackError: the broker refused a binding (its message names it).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType, ResourceType,
    )

    bindings = []
    for principal, gs in grants.items():
        for g in gs:
            for op in g.operations:
                bindings.append(AclBinding(
                    ResourceType[g.resource.upper()], g.name,
                    ResourcePatternType.PREFIXED if g.prefixed else ResourcePatternType.LITERAL,
                    f"User:{principal}", "*", AclOperation[op], AclPermissionType.ALLOW,
                ))
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **admin_security})
    for binding, fut in admin.create_acls(bindings, request_timeout=timeout_s).items():
        try:
            fut.result(timeout_s)
        except KafkaException as exc:
            raise StackError(f"the broker refused the ACL {binding}: {exc.args[0].str()}") from exc
    return len(bindings)
