"""Pure statistics of Agent Gym's experiments: no Kafka, no ClickHouse, no I/O.

* :mod:`~agentgym.processors.stats.statistics` — mergeable sufficient statistics per arm.
* :mod:`~agentgym.processors.stats.sequential` — the always-valid normal-mixture test (mSPRT)
  and asymptotic confidence sequences for absolute and relative differences.
* :mod:`~agentgym.processors.stats.fixed_horizon` — the classical z / Welch t tests.
* :mod:`~agentgym.processors.stats.cuped` — variance reduction with a pre-period covariate.
* :mod:`~agentgym.processors.stats.ppi` — prediction-powered (audit-corrected) estimates of a
  labelled metric, for the same tests.
* :mod:`~agentgym.processors.stats.srm` — sample-ratio mismatch: χ² and the sequential
  Dirichlet-multinomial Bayes factor.
* :mod:`~agentgym.processors.stats.guardrails` — one-sided non-inferiority tests.
* :mod:`~agentgym.processors.stats.multiple` — Holm and Bonferroni corrections.
* :mod:`~agentgym.processors.stats.analysis` — all of it for one metric at one look.

Degenerate data never raises: results carry a :class:`Reason`.
"""

from agentgym.processors.stats.analysis import ArmComparison, GuardrailSpec, MetricAnalysis, analyse_metric
from agentgym.processors.stats.cuped import cuped_adjust, cuped_theta
from agentgym.processors.stats.exceptions import InvalidParameterError, StatsError
from agentgym.processors.stats.fixed_horizon import fixed_horizon_test, two_proportion_z_test, welch_t_test
from agentgym.processors.stats.guardrails import guardrail_test
from agentgym.processors.stats.multiple import adjust_p_values, bonferroni, holm
from agentgym.processors.stats.ppi import (
    PpiEstimate,
    PredictionPoweredStatistic,
    gold_summary,
    label_summary,
    ppi_estimate,
    ppi_summary,
    rectified_mean_and_variance,
)
from agentgym.processors.stats.results import (
    UNBOUNDED,
    DifferenceEstimate,
    FixedHorizonResult,
    GuardrailResult,
    GuardrailStatus,
    Interval,
    Reason,
    SequentialResult,
    SrmResult,
)
from agentgym.processors.stats.sequential import (
    SequentialState,
    log_mixture_likelihood_ratio,
    mixing_rho,
    one_sided_log_mixture_likelihood_ratio,
    one_sided_p_value,
    radius_multiplier,
    sequential_test,
)
from agentgym.processors.stats.srm import SrmState, srm_chi_square, srm_log_bayes_factor, srm_test
from agentgym.processors.stats.statistics import ArmSummary, ProportionStatistic, RegressionAdjustedStatistic, SampleMeanStatistic, Statistic, capped

__all__ = [
    "ArmSummary", "ProportionStatistic", "SampleMeanStatistic", "RegressionAdjustedStatistic", "Statistic", "capped",
    "Reason", "Interval", "UNBOUNDED", "DifferenceEstimate", "SequentialResult", "FixedHorizonResult",
    "GuardrailStatus", "GuardrailResult", "SrmResult",
    "mixing_rho", "log_mixture_likelihood_ratio", "one_sided_log_mixture_likelihood_ratio", "radius_multiplier",
    "sequential_test", "one_sided_p_value", "SequentialState",
    "welch_t_test", "two_proportion_z_test", "fixed_horizon_test",
    "cuped_theta", "cuped_adjust",
    "PredictionPoweredStatistic", "PpiEstimate", "ppi_estimate", "ppi_summary", "label_summary", "gold_summary",
    "rectified_mean_and_variance",
    "srm_chi_square", "srm_log_bayes_factor", "srm_test", "SrmState",
    "guardrail_test", "bonferroni", "holm", "adjust_p_values",
    "ArmComparison", "MetricAnalysis", "GuardrailSpec", "analyse_metric",
    "StatsError", "InvalidParameterError",
]
