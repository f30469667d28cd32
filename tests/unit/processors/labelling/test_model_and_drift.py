"""The online model (learning, calibration steps, checkpoints) and ADWIN drift of success rates."""

from __future__ import annotations

import random

import pytest

from agentgym.processors.labelling.drift import SuccessRateDriftMonitor
from agentgym.processors.labelling.exceptions import ModelConfigError
from agentgym.processors.labelling.model import OnlineOutcomeModel, ProportionStatistic


def _stream(n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ok = rng.random() < 0.7
        out.append(({"x": rng.gauss(1.0 if ok else -1.0, 1.0), "noise": rng.gauss(0, 1)}, ok))
    return out


@pytest.mark.parametrize("kind", ["logistic_regression", "hoeffding_tree"])
def test_learns_online_and_predicts_better_than_chance(kind: str) -> None:
    m = OnlineOutcomeModel(kind)  # type: ignore[arg-type]
    assert m.predict_proba({"x": 1.0}) == 0.5
    data = _stream(1500, 1)
    for x, y in data[:1000]:
        m.learn(x, y)
    acc = sum((m.predict_proba(x) >= 0.5) == y for x, y in data[1000:]) / 500
    assert acc > 0.8  # Bayes accuracy of this problem is about 0.85
    assert m.n_learned == 1000 and m.n_calibrated == 980


def test_label_noise_inversion_sharpens_probabilities() -> None:
    plain, noisy = OnlineOutcomeModel(label_noise=0.0), OnlineOutcomeModel(label_noise=0.1)
    for x, y in _stream(500, 2):
        plain.learn(x, y)
        noisy.learn(x, y)
    for x in ({"x": 2.0, "noise": 0.0}, {"x": -2.0, "noise": 0.0}):
        p, q = plain.predict_proba(x), noisy.predict_proba(x)
        # P = (P_human - eps) / (1 - 2 eps): further from 0.5, same side
        assert q == pytest.approx(min(1.0, max(0.0, (p - 0.1) / 0.8)))
    with pytest.raises(ModelConfigError, match="label_noise"):
        OnlineOutcomeModel(label_noise=0.5)


def test_checkpoint_round_trip() -> None:
    m = OnlineOutcomeModel()
    for x, y in _stream(100, 3):
        m.learn(x, y)
    again = OnlineOutcomeModel.from_bytes(m.to_bytes())
    assert again.predict_proba({"x": 0.3}) == m.predict_proba({"x": 0.3}) and again.version == m.version == "river-logistic-regression@100"


def test_proportion_statistic_merges_like_concatenation() -> None:
    rng = random.Random(4)
    a, b = [rng.random() < 0.3 for _ in range(50)], [rng.random() < 0.8 for _ in range(70)]

    def count(xs: list[bool]) -> ProportionStatistic:
        s = ProportionStatistic()
        for x in xs:
            s = s.add(x)
        return s

    assert count(a) + count(b) == count(a + b)
    assert ProportionStatistic().smoothed_rate == 0.5


def test_adwin_flags_a_drop_in_success_rate_and_estimates_both_sides() -> None:
    rng = random.Random(5)
    mon = SuccessRateDriftMonitor(delta=0.002, grace_period=30)
    events = []
    for i in range(1200):
        p = 0.85 if i < 600 else 0.45
        ev = mon.update("v2", rng.random() < p)
        if ev is not None:
            events.append((i, ev))
    assert events, "the drop was not detected"
    at, ev = events[0]
    assert 600 < at < 800  # within a couple of hundred outcomes
    assert ev.model_version == "v2" and ev.metric == "success_rate" and ev.detector == "ADWIN(delta=0.002)"
    assert ev.estimate_before > 0.7 and ev.estimate_after < ev.estimate_before and ev.n == at + 1


def test_adwin_is_quiet_on_a_stationary_stream_and_versions_are_separate() -> None:
    rng = random.Random(6)
    mon = SuccessRateDriftMonitor()
    alarms = sum(mon.update("v1", rng.random() < 0.7) is not None for _ in range(3000))
    assert alarms == 0
    assert mon.update("v2", True) is None and mon.counts == {"v1": 3000, "v2": 1}
