"""Regenerates ``golden_values.json`` from two independent implementations.

Run on purpose (not a test), in an environment that has them::

    pip install confseq==0.0.11 savvi==0.3.1   # confseq builds C++: needs a compiler and Boost headers
    python tests/unit/stats/golden/generate.py

* ``confseq`` 0.0.11 (Steven Howard's C++/pybind11 implementation of Howard, Ramdas,
  McAuliffe & Sekhon 2021): ``boundaries.normal_log_mixture`` (log of the two- and
  one-sided normal-mixture martingales) and ``boundaries.normal_mixture_bound`` (the
  two-sided boundary), in their variables s (sum), v (intrinsic time), v_opt, alpha_opt.
* ``savvi`` 0.3.1 (Luís Assunção's implementation of Lindon & Malek's multinomial
  test): ``savvi.multinomial.Multinomial`` updated batch by batch; its ``odds`` is the
  Dirichlet-multinomial Bayes factor.

The tests read the JSON, so neither package is needed to run them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("golden_values.json")


def confseq_cases() -> dict[str, list[dict[str, float]]]:
    from confseq import boundaries

    two_sided, one_sided, bounds = [], [], []
    for z in (0.0, 0.5, 1.96, 2.5, 3.3, -2.8):
        for t in (20, 200, 1000, 25_000):
            for t_opt in (100, 2000, 10_000):
                for alpha in (0.05, 0.01):
                    s, v = z * math.sqrt(t), float(t)
                    two_sided.append({"z": z, "t": t, "t_opt": t_opt, "alpha": alpha,
                                      "log_mixture": float(boundaries.normal_log_mixture(s, v, t_opt, alpha, False))})
                    one_sided.append({"z": z, "t": t, "t_opt": t_opt, "alpha": alpha,
                                      "log_mixture": float(boundaries.normal_log_mixture(s, v, t_opt, alpha, True))})
    for t in (20, 200, 1000, 25_000):
        for t_opt in (100, 2000, 10_000):
            for alpha in (0.05, 0.01, 0.1):
                b = float(boundaries.normal_mixture_bound(float(t), alpha, t_opt, alpha, False))
                bounds.append({"t": t, "t_opt": t_opt, "alpha": alpha, "s_bound": b})
    return {"two_sided_log_mixture": two_sided, "one_sided_log_mixture": one_sided, "two_sided_bound": bounds}


def savvi_cases() -> list[dict[str, object]]:
    from savvi.multinomial import Multinomial

    cases: list[dict[str, object]] = []
    rng = np.random.default_rng(7)
    for theta0, true, k in (
        ([0.5, 0.5], [0.5, 0.5], 100.0),
        ([0.5, 0.5], [0.53, 0.47], 100.0),
        ([0.2, 0.3, 0.5], [0.2, 0.3, 0.5], 50.0),
        ([0.2, 0.3, 0.5], [0.25, 0.3, 0.45], 10.0),
        ([0.9, 0.1], [0.9, 0.1], 1.0),
    ):
        m = Multinomial(0.05, np.array(theta0), k=k)
        batches, odds, p_values = [], [], []
        for size in (10, 90, 400, 1500, 3000):
            x = rng.multinomial(size, true)
            m.update(x.astype(np.int64))
            m.p_value = np.fmin(m.p_value, m.calculate_p_value())  # infer() without the CVXPY intervals
            batches.append([int(c) for c in x])
            odds.append(float(m.odds))
            p_values.append(float(m.p_value[0]))
        cases.append({"theta0": theta0, "k": k, "batches": batches, "odds": odds, "p_values": p_values})
    return cases


def main() -> None:
    import confseq
    import savvi

    data = {
        "sources": {
            "confseq": f"confseq {getattr(confseq, '__version__', '0.0.11')} (PyPI), boundaries.normal_log_mixture / normal_mixture_bound",
            "savvi": "savvi 0.3.1 (PyPI), savvi.multinomial.Multinomial (odds, running-minimum p-value)",
        },
        "confseq": confseq_cases(),
        "savvi_multinomial": savvi_cases(),
    }
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
