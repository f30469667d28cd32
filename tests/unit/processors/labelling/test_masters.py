"""The labeller's masters across rebalances (processors/labelling/masters.py).

Faust revokes every partition at every rebalance; a master whose checkpoint is still the
table's keeps what it learnt since, and one checkpointed elsewhere meanwhile is reloaded.
"""

from __future__ import annotations

from agentgym.processors.labelling.engine import AgentLearner, LabellingEngine, TrainingExample
from agentgym.processors.labelling.masters import MasterLearners

ENGINE = LabellingEngine()
KEY = '["acme", "bot"]'


def _load(data: bytes | None) -> AgentLearner:
    return ENGINE.fit_learner(AgentLearner.from_bytes(data) if data else None, "acme", "bot")


def _learn(learner: AgentLearner, n: int) -> None:
    for i in range(n):
        learner.learn(TrainingExample({"log_latency_s": float(i % 5)}, bool(i % 2), True))


def test_a_master_survives_a_rebalance_that_leaves_its_checkpoint_alone() -> None:
    masters = MasterLearners()
    table: dict[str, bytes] = {}
    m = masters.get(KEY, table.get(KEY), _load)
    _learn(m, 10)
    table[KEY] = m.to_bytes()
    masters.checkpointed(KEY, table[KEY])
    _learn(m, 3)  # learnt after the checkpoint: only in memory
    masters.dirty.add(KEY)
    # a rebalance: every partition revoked, the home partition assigned again, the table restored
    table[KEY] = bytes(table[KEY])  # a restored copy: equal bytes, another object
    again = masters.get(KEY, table[KEY], _load)
    assert again is m and again.model.n_learned == 13  # the 3 labels since the checkpoint are kept
    assert KEY in masters.dirty  # and checkpointed at the next tick


def test_a_master_checkpointed_elsewhere_meanwhile_is_reloaded() -> None:
    masters = MasterLearners()
    mine = masters.get(KEY, None, _load)
    _learn(mine, 4)
    masters.dirty.add(KEY)
    # the home partition moved to another worker, which learnt and checkpointed, and came back
    theirs = _load(None)
    _learn(theirs, 20)
    checkpoint = theirs.to_bytes()
    got = masters.get(KEY, checkpoint, _load)
    assert got is not mine and got.model.n_learned == 20
    assert KEY not in masters.dirty  # the stale master's changes are not checkpointed over the newer one


def test_masters_of_homes_no_longer_owned_are_forgotten() -> None:
    masters = MasterLearners()
    for key in ('["a", "x"]', '["a", "y"]'):
        masters.get(key, None, _load)
        masters.dirty.add(key)
    home = {'["a", "x"]': 0, '["a", "y"]': 3}
    assert masters.forget_unless({0, 1, 2}, home.__getitem__) == ['["a", "y"]']
    assert '["a", "x"]' in masters and '["a", "y"]' not in masters and masters.dirty == {'["a", "x"]'}
