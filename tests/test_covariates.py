"""Covariate aggregation on a hand-made features table."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from causalmix.causal.covariates import covariate_names, pool_covariates, sample_covariates
from causalmix.core.errors import UserError

FEATURES = pd.DataFrame({
    "doc_id": ["a1", "a2", "b1", "b2", "b3"],
    "domain": ["a", "a", "b", "b", "b"],
    "normalized_loss": [0.2, 0.4, 0.6, 0.9, 0.3],
    "writing_style": [1.0, 3.0, 0.0, 0.0, 3.0],
    "hes": [2.0, 4.0, 6.0, 8.0, 10.0],
})


def test_pool_covariates_are_domain_means():
    cov = pool_covariates(FEATURES, ["a", "b"])
    assert cov["x.a.normalized_loss"] == pytest.approx(0.3)
    assert cov["x.b.hes"] == pytest.approx(8.0)
    assert list(cov) == covariate_names(["a", "b"])


def test_sample_covariates_count_duplicates_and_fall_back():
    cov = sample_covariates(FEATURES, ["a1", "a1", "a2"], ["a", "b"], fallback={"x.b.hes": 7.0})
    assert cov["x.a.writing_style"] == pytest.approx((1 + 1 + 3) / 3)
    assert cov["x.b.hes"] == 7.0
    assert math.isnan(cov["x.b.normalized_loss"])


def test_errors_name_the_problem():
    with pytest.raises(UserError, match="domain 'c'"):
        pool_covariates(FEATURES, ["a", "c"])
    with pytest.raises(UserError, match="zz"):
        sample_covariates(FEATURES, ["zz"], ["a"])
    with pytest.raises(UserError, match="hes"):
        pool_covariates(FEATURES.drop(columns="hes"), ["a"])
