"""The mixture simplex: projection and checks, Dirichlet sampling (RegMix recipe), trust regions.

Pure numpy; no Ray. Public API:
`project_to_simplex`, `validate_mixtures`, `DirichletMixtureSampler`,
`prior_from_token_counts`, `trust_region_candidates`, `step_to_radius`, `steps_along`,
`farthest_reach`, `RunSupport` (where the logged runs give evidence).
"""
from causalmix.mixture_space.dirichlet import DirichletMixtureSampler, prior_from_token_counts
from causalmix.mixture_space.simplex import equal_mixture, project_to_simplex, validate_mixtures
from causalmix.mixture_space.constraints import DEFAULT_MAX_EPOCHS, MixtureBounds, project_to_bounds
from causalmix.mixture_space.support import RunSupport
from causalmix.mixture_space.trust_region import (MAX_TRUST_RADIUS, farthest_reach, simplex_distance, step_to_radius,
                                        steps_along, trust_region_candidates)

__all__ = ["DirichletMixtureSampler", "prior_from_token_counts", "equal_mixture",
           "project_to_simplex", "validate_mixtures", "simplex_distance", "step_to_radius",
           "trust_region_candidates", "steps_along", "farthest_reach", "MAX_TRUST_RADIUS", "RunSupport",
           "MixtureBounds", "project_to_bounds", "DEFAULT_MAX_EPOCHS"]
