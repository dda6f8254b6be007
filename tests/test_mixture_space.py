"""mixture_space: simplex projection, mixture checks, RegMix Dirichlet sampler, trust regions."""
import warnings

import numpy as np
import pytest

from causalmix.core.errors import UserError
from causalmix.mixture_space import (DirichletMixtureSampler, prior_from_token_counts, project_to_simplex,
                           simplex_distance, step_to_radius, trust_region_candidates,
                           validate_mixtures)


def _brute_projection(v, n=4000, seed=0):
    """Best of many random simplex points plus vertices: an upper bound on the optimum."""
    rng = np.random.default_rng(seed)
    pts = np.vstack([rng.dirichlet(np.ones(v.size) * 0.3, n), np.eye(v.size)])
    return pts[np.argmin(((pts - v) ** 2).sum(axis=1))]


def test_projection_is_on_simplex_and_optimal():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(50, 4)) * 2
    w = project_to_simplex(v)
    assert np.allclose(w.sum(axis=1), 1) and (w >= 0).all()
    for row, proj in zip(v[:10], w[:10]):
        assert ((proj - row) ** 2).sum() <= ((_brute_projection(row) - row) ** 2).sum() + 1e-12
        # KKT: v - w = theta on the support, <= theta off it
        gap = row - proj
        theta = gap[proj > 0].mean()
        assert np.allclose(gap[proj > 0], theta) and (gap[proj == 0] <= theta + 1e-12).all()


def test_projection_keeps_simplex_points_and_handles_1d():
    p = np.array([0.2, 0.3, 0.5])
    assert np.allclose(project_to_simplex(p), p)
    assert project_to_simplex(np.array([5.0, 0.0])).tolist() == [1.0, 0.0]


def test_validate_mixtures_renormalises_warns_and_rejects():
    ok = validate_mixtures(np.array([[0.5, 0.5], [0.2, 0.8 + 1e-9]]))
    assert np.allclose(ok.sum(axis=1), 1)
    with pytest.warns(UserWarning, match="renormalised 1"):
        validate_mixtures(np.array([[0.5, 0.5], [0.2, 0.805]]))
    with pytest.raises(UserError, match="rows r1 sum to 1.1"):
        validate_mixtures(np.array([[0.5, 0.5], [0.3, 0.8]]), row_ids=["r0", "r1"])
    with pytest.raises(UserError, match="negative"):
        validate_mixtures(np.array([[1.2, -0.2]]), domains=["a", "b"])
    with pytest.raises(UserError, match="non-finite"):
        validate_mixtures(np.array([[np.nan, 1.0]]))


def test_prior_from_token_counts_matches_regmix_temperature():
    prior = prior_from_token_counts({"a": 1.0, "b": 4.0}, temperature=0.5)
    assert np.allclose(prior, [1 / 3, 2 / 3])
    with pytest.raises(UserError):
        prior_from_token_counts([1.0, -1.0])


def test_sampler_is_seeded_distinct_bounded_and_thresholded():
    counts = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.04, "e": 0.01}
    s1 = DirichletMixtureSampler.from_token_counts(counts, seed=7)
    s2 = DirichletMixtureSampler.from_token_counts(counts, seed=7)
    a, b = s1.sample(200), s2.sample(200)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, DirichletMixtureSampler.from_token_counts(counts, seed=8).sample(200))
    assert np.allclose(a.sum(axis=1), 1)
    assert ((a == 0) | (a >= 2e-4 * 0.99)).all()
    shares = np.array(list(counts.values()))
    # bound on raw shares (RegMix MAXIMUM_USAGE), up to renormalisation after rounding
    assert (a <= np.minimum(15 * shares, 1) + 1e-3).all()
    # draws span sparse (small concentration) and near-prior mixtures
    assert (a == 0).any(axis=1).mean() > 0.2
    more = s1.sample(50)
    everything = np.vstack([a, more])
    dists = np.abs(everything[:, None, :] - everything[None, :, :]).sum(axis=2)
    assert (dists[np.triu_indices(len(everything), 1)] > 1e-5).all()
    assert s1.sample_dicts(1)[0].keys() == counts.keys()


def test_sampler_rejects_impossible_requests():
    tight = DirichletMixtureSampler(prior=[0.5, 0.5], min_weight=0.2, round_to_min_weight=True,
                                    max_draws=5000)
    with pytest.raises(UserError, match="distinct mixtures"):
        tight.sample(100)
    with pytest.raises(UserError, match="min_weight"):
        DirichletMixtureSampler(prior=[0.5, 0.5], min_weight=0.6)


def test_step_to_radius_moves_along_centred_direction():
    ref = np.full(4, 0.25)
    w = step_to_radius(ref, np.array([1.0, 0.0, 0.0, 0.0]), 0.1)
    assert np.isclose(simplex_distance(w, ref)[0], 0.1)
    assert w[0] > 0.25 and np.allclose(w[1:], w[1])
    far = step_to_radius(ref, np.array([1.0, 0.0, 0.0, 0.0]), 5.0)
    assert np.allclose(far, [1, 0, 0, 0])
    assert np.allclose(step_to_radius(ref, np.ones(4), 0.3), ref)


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_trust_region_candidates_inside_radius(norm):
    ref = np.array([0.7, 0.2, 0.05, 0.05])
    c = trust_region_candidates(ref, 0.15, 500, norm=norm, seed=3)
    assert c.shape == (500, 4) and np.allclose(c[0], ref)
    assert np.allclose(c.sum(axis=1), 1) and (c >= -1e-12).all()
    d = simplex_distance(c, ref, norm)
    assert (d <= 0.15 + 1e-9).all() and d.max() > 0.12
