"""Prediction-powered A/B estimates and CUPED, by simulation (not a test): ``python -m agentgym.ops.bench.ppi``.

Every scenario runs many replicate experiments at once (NumPy, vectorised over
replicates), looking ``looks`` times, ``per_look`` units per arm between looks, with the
engine's own formulas: the rectified estimator of :mod:`agentgym.processors.stats.ppi`
(:func:`~agentgym.processors.stats.ppi.rectified_mean_and_variance`), the normal-mixture
test and confidence sequence of :mod:`agentgym.processors.stats.sequential` with the
engine's mixing parameter and burn-in, and CUPED's pooled θ
(:mod:`agentgym.processors.stats.cuped`). Prints:

1. a labeller whose error differs by arm, true difference 0: the plain (labelled) test's
   false-positive rate under continuous monitoring against the PPI test's (<= α);
2. a true difference opposite in sign to the labelled one: how often each test
   promotes the wrong arm (PPI: <= α);
3. coverage of the corrected confidence sequence at all looks (>= 1 − α);
4. cost: E[N] of the PPI test against a test on the gold labels of the same audit
   sample alone, and E[N]/n_fix with CUPED at covariate correlation 0.6 and 1.5× the MDE
   (target <= 0.4).

The tests (``tests/unit/stats/test_ppi.py``) call the same functions with fewer
replicates and assert the type-I and coverage properties within Monte-Carlo error.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from agentgym.processors.stats.ppi import rectified_mean_and_variance
from agentgym.processors.stats.sequential import log_mixture_likelihood_ratio, mixing_rho, radius_multiplier

__all__ = ["Labeller", "MonitoringResult", "simulate_ppi", "simulate_cuped", "fixed_horizon_n", "main"]


@dataclass(frozen=True, slots=True)
class Labeller:
    """A labeller of binary outcomes that errs per arm: P(label 1 | truth 0) and P(label 0 | truth 1)."""

    false_positive: float = 0.0
    false_negative: float = 0.0

    def expected_label(self, p: float) -> float:
        """E[label] when the true success rate is ``p``."""
        return p * (1.0 - self.false_negative) + (1.0 - p) * self.false_positive


@dataclass(frozen=True, slots=True)
class MonitoringResult:
    """Per replicate, one test monitored over all looks.

    Attributes:
        stopped: whether the always-valid p-value reached α at some look.
        sign: the sign of the estimate at the stopping look (0 when it never stopped).
        n_stop: units per arm at the stopping look (the last look's when it never stopped).
        covered: whether every look's confidence-sequence interval held the true difference.
    """

    stopped: np.ndarray
    sign: np.ndarray
    n_stop: np.ndarray
    covered: np.ndarray

    def rate(self, sign: int | None = None) -> float:
        """Fraction of replicates that stopped (with the estimate's ``sign``, when given)."""
        hit = self.stopped if sign is None else self.stopped & (self.sign == sign)
        return float(hit.mean())


class _Monitor:
    """Running always-valid test of one comparison over looks, vectorised over replicates."""

    def __init__(self, replicates: int, rho: float, alpha: float, truth: float) -> None:
        self.rho, self.alpha, self.truth = rho, alpha, truth
        self.threshold = math.log(1.0 / alpha)
        self.stopped = np.zeros(replicates, bool)
        self.sign = np.zeros(replicates, np.int8)
        self.n_stop = np.zeros(replicates)
        self.covered = np.ones(replicates, bool)

    def look(self, diff: np.ndarray, var: np.ndarray, t: np.ndarray, n_per_arm: float, ready: np.ndarray) -> None:
        """One look: ``diff`` and its variance ``var`` at ``t`` units (both arms); ``ready``: past the burn-in."""
        ok = ready & np.isfinite(diff) & np.isfinite(var) & (var > 0)
        se = np.sqrt(np.where(ok, var, 1.0))
        z = np.where(ok, diff / se, 0.0)
        log_lr = log_mixture_likelihood_ratio(z, t, self.rho)
        radius = radius_multiplier(t, self.rho, self.alpha) * se
        self.covered &= ~ok | (np.abs(diff - self.truth) <= radius)
        new = ok & ~self.stopped & (log_lr >= self.threshold)
        self.sign[new] = np.sign(diff[new]).astype(np.int8)
        self.n_stop[new] = n_per_arm
        self.stopped |= new
        self.n_stop[~self.stopped] = n_per_arm

    def result(self) -> MonitoringResult:
        return MonitoringResult(self.stopped.copy(), self.sign.copy(), self.n_stop.copy(), self.covered.copy())


def _draw_arm(rng: np.random.Generator, shape: tuple[int, int], p: float, labeller: Labeller,
              audit_rate: float) -> tuple[np.ndarray, ...]:
    """Per replicate, one look's sums of an arm: n, Σf, m, Σf over the audit, Σy over it, Σfy over it."""
    y = rng.random(shape) < p
    u = rng.random(shape)
    f = np.where(y, u >= labeller.false_negative, u < labeller.false_positive)
    a = rng.random(shape) < audit_rate  # the audit: independent of y and f (a hash of the unit)
    fa, ya = f & a, y & a
    return (f.sum(1), a.sum(1), fa.sum(1), ya.sum(1), (fa & y).sum(1))


def simulate_ppi(
    *, p_control: float, p_treatment: float, labeller_control: Labeller, labeller_treatment: Labeller,
    audit_rate: float, replicates: int = 2000, looks: int = 30, per_look: int = 100, alpha: float = 0.05,
    min_samples_per_arm: int = 100, min_audit: int = 30, mixing_horizon: float = 10.0, seed: int = 0,
) -> dict[str, MonitoringResult]:
    """Replicate experiments on a binary success metric labelled by an erring labeller.

    Three tests are monitored on the same data: ``plain`` (the labels' means, what the
    engine tested before), ``ppi`` (the rectified estimate) and ``gold`` (the gold labels
    of the audit sample alone). The first two use the engine's ρ for
    ``mixing_horizon × min_samples_per_arm × 2`` units; the gold-only test's ρ is tuned
    for ``audit_rate`` of that (its units are the audited ones), and its burn-in is
    ``min_audit`` audited units per arm.

    Returns:
        test name -> :class:`MonitoringResult` (``n_stop`` in units per arm, audited or not).
    """
    rng = np.random.default_rng(seed)
    shape = (replicates, per_look)
    horizon = mixing_horizon * min_samples_per_arm * 2
    rho = mixing_rho(horizon, alpha)
    rho_gold = mixing_rho(max(horizon * audit_rate, 1.0), alpha)
    truth = p_treatment - p_control
    monitors = {"plain": _Monitor(replicates, rho, alpha, truth), "ppi": _Monitor(replicates, rho, alpha, truth),
                "gold": _Monitor(replicates, rho_gold, alpha, truth)}
    sums = {arm: np.zeros((5, replicates)) for arm in ("c", "t")}
    for k in range(1, looks + 1):
        for arm, p, lab in (("c", p_control, labeller_control), ("t", p_treatment, labeller_treatment)):
            sums[arm] += np.array(_draw_arm(rng, shape, p, lab, audit_rate), dtype=float)
        n = float(k * per_look)
        est, var, plain_mean, plain_var, gold_mean, gold_var, m = {}, {}, {}, {}, {}, {}, {}
        for arm in ("c", "t"):
            sf, ma, sfa, sya, sfy = sums[arm]
            m[arm] = ma
            with np.errstate(divide="ignore", invalid="ignore"):
                # binary values: every sum of squares is the sum
                est[arm], var[arm] = rectified_mean_and_variance(n, sf, sf, ma, sfa, sfa, sya, sya, sfy)
                plain_mean[arm] = sf / n
                plain_var[arm] = plain_mean[arm] * (1 - plain_mean[arm]) / n
                gold_mean[arm] = sya / ma
                gold_var[arm] = gold_mean[arm] * (1 - gold_mean[arm]) / ma
        ready_n = np.full(replicates, n >= min_samples_per_arm)
        ready_audit = ready_n & (np.minimum(m["c"], m["t"]) >= min_audit)
        t = np.full(replicates, 2 * n)
        monitors["plain"].look(plain_mean["t"] - plain_mean["c"], plain_var["t"] + plain_var["c"], t, n, ready_n)
        monitors["ppi"].look(est["t"] - est["c"], np.maximum(var["t"], 0) + np.maximum(var["c"], 0), t, n, ready_audit)
        monitors["gold"].look(gold_mean["t"] - gold_mean["c"], gold_var["t"] + gold_var["c"], m["c"] + m["t"], n,
                              np.minimum(m["c"], m["t"]) >= min_audit)
    return {name: mon.result() for name, mon in monitors.items()}


def fixed_horizon_n(mde: float, sigma: float = 1.0, alpha: float = 0.05, power: float = 0.8) -> float:
    """Units per arm of the two-sided fixed-horizon z-test with ``power`` at ``mde``: 2σ²(z_{1−α/2} + z_power)²/mde²."""
    return 2.0 * sigma * sigma * (norm.ppf(1 - alpha / 2) + norm.ppf(power)) ** 2 / (mde * mde)


def simulate_cuped(
    *, effect: float, correlation: float, replicates: int = 2000, looks: int = 30, per_look: int = 100,
    alpha: float = 0.05, min_samples_per_arm: int = 100, mixing_horizon: float = 10.0, seed: int = 0,
) -> dict[str, MonitoringResult]:
    """Replicate experiments on a normal metric (σ = 1) with a pre-period covariate of the given correlation.

    Monitors ``plain`` (difference of means) and ``cuped`` (Deng et al. 2013: pooled
    θ = cov(y, x)/var(x) re-estimated at every look, per-arm variance of y − θx), both
    with the engine's ρ and burn-in.
    """
    rng = np.random.default_rng(seed)
    rho = mixing_rho(mixing_horizon * min_samples_per_arm * 2, alpha)
    monitors = {"plain": _Monitor(replicates, rho, alpha, effect), "cuped": _Monitor(replicates, rho, alpha, effect)}
    # per arm: Σy, Σy², Σx, Σx², Σxy
    sums = {arm: np.zeros((5, replicates)) for arm in ("c", "t")}
    resid = math.sqrt(1.0 - correlation * correlation)
    for k in range(1, looks + 1):
        for arm, mu in (("c", 0.0), ("t", effect)):
            x = rng.standard_normal((replicates, per_look))
            y = mu + correlation * x + resid * rng.standard_normal((replicates, per_look))
            sums[arm] += np.stack([y.sum(1), (y * y).sum(1), x.sum(1), (x * x).sum(1), (x * y).sum(1)])
        n = float(k * per_look)
        sy = {a: sums[a][0] for a in sums}
        vy = {a: (sums[a][1] - sums[a][0] ** 2 / n) / (n - 1) for a in sums}
        vx = {a: (sums[a][3] - sums[a][2] ** 2 / n) / (n - 1) for a in sums}
        cxy = {a: (sums[a][4] - sums[a][0] * sums[a][2] / n) / (n - 1) for a in sums}
        pooled = sums["c"] + sums["t"]
        theta = (pooled[4] - pooled[0] * pooled[2] / (2 * n)) / (pooled[3] - pooled[2] ** 2 / (2 * n))
        x_bar = pooled[2] / (2 * n)
        adj = {a: sy[a] / n - theta * (sums[a][2] / n - x_bar) for a in sums}
        vadj = {a: np.maximum(vy[a] - 2 * theta * cxy[a] + theta * theta * vx[a], 0.0) for a in sums}
        ready = np.full(replicates, n >= min_samples_per_arm)
        t = np.full(replicates, 2 * n)
        monitors["plain"].look(sy["t"] / n - sy["c"] / n, (vy["t"] + vy["c"]) / n, t, n, ready)
        monitors["cuped"].look(adj["t"] - adj["c"], (vadj["t"] + vadj["c"]) / n, t, n, ready)
    return {name: mon.result() for name, mon in monitors.items()}


def _se(p: float, r: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / r)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=4000)
    parser.add_argument("--looks", type=int, default=30)
    parser.add_argument("--per-look", type=int, default=100, help="units per arm between looks")
    parser.add_argument("--audit-rate", type=float, default=0.2)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    r, a, looks, per = args.replicates, args.alpha, args.looks, args.per_look
    common = dict(audit_rate=args.audit_rate, replicates=r, looks=looks, per_look=per, alpha=a, seed=args.seed)
    start = time.perf_counter()
    print(f"{r} replicates, {looks} looks of {per} units per arm, audit rate {args.audit_rate}, alpha {a}")

    # 1. the demo's labeller: base 50 % true, labelled ~54.8 %; fine-tuned errs more (false positives 0.24 vs 0.10)
    lab_c, lab_t = Labeller(0.10, 0.0), Labeller(0.24, 0.0)
    res = simulate_ppi(p_control=0.5, p_treatment=0.5, labeller_control=lab_c, labeller_treatment=lab_t, **common)
    print(f"\n1. true difference 0, labelled difference {lab_t.expected_label(0.5) - lab_c.expected_label(0.5):+.3f}")
    for name in ("plain", "ppi", "gold"):
        fp = res[name].rate()
        print(f"   {name:5s} false-positive rate {fp:.4f} (MC se {_se(fp, r):.4f})")
    print(f"   ppi   coverage of the confidence sequence at all looks {res['ppi'].covered.mean():.4f}")

    # 2. the truth goes one way, the labels the other
    p_c, p_t = 0.50, 0.46
    res = simulate_ppi(p_control=p_c, p_treatment=p_t, labeller_control=lab_c, labeller_treatment=lab_t, **common)
    labelled = lab_t.expected_label(p_t) - lab_c.expected_label(p_c)
    print(f"\n2. true difference {p_t - p_c:+.3f}, labelled difference {labelled:+.3f}")
    for name in ("plain", "ppi", "gold"):
        wrong, right = res[name].rate(+1), res[name].rate(-1)
        print(f"   {name:5s} promotes the worse arm {wrong:.4f}; concludes the right way {right:.4f}")
    print(f"   ppi   coverage of the confidence sequence at all looks {res['ppi'].covered.mean():.4f}")

    # 3/4. a real effect, a good labeller (10 % symmetric error on both arms): E[N]
    good = Labeller(0.10, 0.10)
    for p_t in (0.56, 0.60):
        res = simulate_ppi(p_control=0.5, p_treatment=p_t, labeller_control=good, labeller_treatment=good, **common)
        print(f"\n3. 0.50 -> {p_t:.2f}, labeller 90 % accurate on both arms")
        for name in ("plain", "ppi", "gold"):
            m = res[name]
            print(f"   {name:5s} power {m.rate(+1):.4f}, E[N] per arm {m.n_stop.mean():7.0f} "
                  f"(of {looks * per}), gold labels per arm {m.n_stop.mean() * (0 if name == 'plain' else args.audit_rate):6.0f}, "
                  f"coverage {m.covered.mean():.4f}")

    # CUPED: normal metric, σ = 1, n_fix = 1000 per arm at the MDE
    n_fix = 1000.0
    mde = math.sqrt(2.0) * (norm.ppf(1 - a / 2) + norm.ppf(0.8)) / math.sqrt(n_fix)
    print(f"\n4. CUPED, MDE {mde:.4f} (n_fix {n_fix:.0f} per arm, 80 % power, two-sided alpha {a}), effect 1.5 x MDE, "
          "up to 3 n_fix; E[N] counts a run that never stops as 3 n_fix")
    for per in (100, 25):
        looks_c = int(3 * n_fix) // per
        for corr in (0.0, 0.6):
            res = simulate_cuped(effect=1.5 * mde, correlation=corr, replicates=r, looks=looks_c, per_look=per, alpha=a, seed=args.seed)
            null = simulate_cuped(effect=0.0, correlation=corr, replicates=r, looks=looks_c, per_look=per, alpha=a, seed=args.seed + 1)
            for name in ("plain", "cuped"):
                print(f"   looks every {per:3d}/arm, corr {corr:.1f} {name:5s} E[N]/n_fix {res[name].n_stop.mean() / n_fix:.3f}, "
                      f"power {res[name].rate(+1):.4f}, A/A false positives {null[name].rate():.4f}, "
                      f"coverage {res[name].covered.mean():.4f}")
    print(f"\n({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
