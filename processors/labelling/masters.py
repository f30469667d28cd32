"""The labeller's live learners (masters), kept across rebalances while they are still the newest.

An agent's learner is trained on its *home* partition (:func:`agentgym.processors.labeller.home_partition`)
by whichever worker owns it, and checkpointed to the ``labeller-learners`` table every tick.
Faust rebalances eagerly: every join, leave or session timeout of *any* worker revokes
*every* partition of every worker before assigning them again. Dropping the masters on
revocation (as the labeller did) threw away each agent's learning since its last
checkpoint at every rebalance, on every worker, also where the home partition stayed.

So a master is kept, and it remembers the checkpoint it started from or last wrote (its
*basis*). At its next use it is the newest state of the learner exactly when the table
still holds that basis: nobody else has checkpointed the agent since. Otherwise the
partition was owned elsewhere meanwhile, and the master is reloaded from the table. What
this worker learnt after its last checkpoint of an agent whose home partition moved to
another worker is lost (at most a tick and the commands' lag): the price of checkpointing
once per tick instead of at every label.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from agentgym.processors.labelling.engine import AgentLearner

__all__ = ["MasterLearners"]

log = logging.getLogger("agentgym.labeller")


class MasterLearners:
    """Masters by agent key, each with its basis; and the agents changed since their last checkpoint."""

    def __init__(self) -> None:
        self._masters: dict[str, tuple[AgentLearner, bytes | None]] = {}
        self.dirty: set[str] = set()

    def __contains__(self, agent_key: str) -> bool:
        return agent_key in self._masters

    def get(self, agent_key: str, checkpoint: bytes | None, load: Callable[[bytes | None], AgentLearner]) -> AgentLearner:
        """The master of ``agent_key``, given the table's current ``checkpoint`` of it.

        Args:
            load: builds the learner from a checkpoint (None: a new learner).
        """
        cached = self._masters.get(agent_key)
        if cached is not None and (cached[1] is checkpoint or cached[1] == checkpoint):
            return cached[0]
        if cached is not None:
            log.info("labeller: learner %s was checkpointed elsewhere meanwhile; reloading it", agent_key)
            self.dirty.discard(agent_key)
        learner = load(checkpoint)
        self._masters[agent_key] = (learner, checkpoint)
        return learner

    def peek(self, agent_key: str) -> AgentLearner | None:
        """The master if this worker has one (no check against the table)."""
        cached = self._masters.get(agent_key)
        return cached[0] if cached is not None else None

    def checkpointed(self, agent_key: str, data: bytes) -> None:
        """Records that ``data`` (the master's bytes) is now the table's checkpoint of the agent."""
        cached = self._masters.get(agent_key)
        if cached is not None:
            self._masters[agent_key] = (cached[0], data)

    def forget_unless(self, homes: Iterable[int], home_of: Callable[[str], int]) -> list[str]:
        """Drops the masters (and dirty marks) of agents whose home partition is not in ``homes``;
        returns their keys. Called once the assignment is settled, never during a rebalance."""
        keep = set(homes)
        gone = [k for k in self._masters if home_of(k) not in keep]
        for k in gone:
            del self._masters[k]
            self.dirty.discard(k)
        self.dirty -= {k for k in self.dirty if home_of(k) not in keep}
        return gone
