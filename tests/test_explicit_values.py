"""A value the user gives is the value used, also when it equals a default (no Ray)."""
from __future__ import annotations

from causalmix.causal.fitting import FitConfig, make_estimator
from causalmix.commands.demo import FULL_DEFAULTS, QUICK_DEFAULTS, DemoConfig

DOMAINS = ["a", "b", "c"]


def test_fit_keeps_a_given_n_estimators_for_every_estimator():
    assert make_estimator(FitConfig(estimator="regmix", n_estimators=200), DOMAINS).n_estimators == 200
    assert make_estimator(FitConfig(estimator="regmix"), DOMAINS).n_estimators == 1000
    assert make_estimator(FitConfig(estimator="causal-forest"), DOMAINS).n_estimators == 200
    assert make_estimator(FitConfig(estimator="causal-forest", n_estimators=1000), DOMAINS).n_estimators == 1000


def test_demo_quick_fills_only_the_sizes_not_given():
    assert DemoConfig(quick=True, sweep_runs=56).sweep_runs == 56
    quick, full = DemoConfig(quick=True), DemoConfig()
    assert {name: getattr(quick, name) for name in QUICK_DEFAULTS} == QUICK_DEFAULTS
    assert {name: getattr(full, name) for name in FULL_DEFAULTS} == FULL_DEFAULTS
    assert DemoConfig(validate_seeds=2).validate_seeds == 2
