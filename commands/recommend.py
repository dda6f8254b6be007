"""`recommend`: recommend a mixture for a pool from a fitted model (one JSON object on the last line)."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from causalmix.causal.model_dir import DEFAULT_TRUST_RADIUS, load_model_dir
from causalmix.causal.policy import POLICIES, check_trust_radius
from causalmix.commands.constraints import add_constraint_arguments, bounds_from_args
from causalmix.commands.summaries import recommend_summary
from causalmix.core.cli_config import ConfigFlags
from causalmix.core.config import read_json_file
from causalmix.core.errors import UserError
from causalmix.core.logs import get_logger
from causalmix.service import schemas

log = get_logger(__name__)


def _seed(text: str) -> int:
    """numpy's generators take only non-negative seeds; say so at the flag, not in a traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _radius(text: str):
    try:
        return check_trust_radius(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class RecommendConfig:
    """Settings of `launch.py recommend` (the model, the pool and the constraints are flags)."""

    policy: str = "analytic"
    """analytic (CausalMix-A), search (CausalMix-S) or top-k (RegMix's policy)."""
    trust_radius: float | str = DEFAULT_TRUST_RADIUS
    """auto (set by the runs' support and the gain's lower bound, docs/causal.md) or the L2
    radius around the reference, at most mixture_space.MAX_TRUST_RADIUS (the simplex's widest)."""
    reference: str = "equal"
    """'equal' or a JSON file {domain: weight}."""
    alpha: float = 0.1
    """The interval level is 1 - alpha; the auto radius maximises that interval's lower bound."""
    top_k: int | None = None
    """search: average the top k candidates (None: 1); top-k: 128."""
    seed: int = 0
    """Candidate sampling seed (>= 0)."""

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {list(POLICIES)}, got {self.policy!r}")
        try:
            object.__setattr__(self, "trust_radius", check_trust_radius(self.trust_radius))
        except UserError as exc:
            raise ValueError(f"trust_radius: {exc}") from None
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


FLAGS = ConfigFlags(RecommendConfig, ("policy", "trust_radius", "reference", "alpha", "top_k", "seed"),
                    # checked at the flag, so a bad value reads as argparse's usage error
                    options={"policy": {"choices": POLICIES}, "trust_radius": {"type": _radius},
                             "seed": {"type": _seed}})


def add_arguments(parser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="model directory written by `fit`")
    target.add_argument("--endpoint", help="URL of a running `serve` (e.g. http://127.0.0.1:8000)")
    # neither, for a model without covariates (an imported swarm's)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--covariates", help="JSON file: {covariate name: value} (not needed when the model "
                        "has no covariates)")
    source.add_argument("--pool-features", dest="pool_features",
                        help="the pool's per-document features: a `featurize` output folder or a Parquet "
                        "file (covariates = per-domain means)")
    FLAGS.add_config_argument(parser)
    FLAGS.add_to(parser)
    add_constraint_arguments(parser)


def _labels(args, cfg: RecommendConfig) -> dict[str, str]:
    """Where each field of the request came from, for the error messages."""
    return {"covariates": f"covariates file {args.covariates}" if args.covariates
            else f"--pool-features {args.pool_features}",
            "reference": f"reference file {cfg.reference}", "policy": "--policy", "alpha": "--alpha",
            "trust_radius": "--trust-radius", "top_k": "--top-k", "seed": "--seed"}


def pool_covariates(args, names: list[str]) -> dict:
    """The target pool's covariates from --covariates or --pool-features; none for a model
    without covariates."""
    if args.covariates:
        return read_json_file(args.covariates, "covariates")
    if args.pool_features:
        from causalmix.causal.covariates import covariates_from_features  # deferred: heavy import (pandas)

        return covariates_from_features(args.pool_features, names)
    if names:
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise UserError(f"the model has {len(names)} covariates ({shown}): give the pool's --covariates FILE "
                        "or --pool-features DIR")
    return {}


def run(args) -> int:
    cfg = FLAGS.load(args)
    labels = _labels(args, cfg)
    payload = {"policy": cfg.policy, "trust_radius": cfg.trust_radius, "alpha": cfg.alpha, "top_k": cfg.top_k,
               "seed": cfg.seed,
               "reference": "equal" if cfg.reference == "equal" else read_json_file(cfg.reference, "reference mixture")}
    if args.endpoint:
        # deferred: the HTTP client, needed only with --endpoint
        from causalmix.service.client import model_info_via_endpoint, recommend_via_endpoint

        info = model_info_via_endpoint(args.endpoint)
        payload["covariates"] = pool_covariates(args, info["covariate_names"])
        bounds = bounds_from_args(args, info["domains"])
        if bounds is not None:
            payload["constraints"] = {"lower": bounds.to_json()["lower"], "upper": bounds.to_json()["upper"]}
        schemas.parse_recommend(payload, labels)  # the service's own check, with the file named
        result = recommend_via_endpoint(args.endpoint, payload)
    else:
        model = load_model_dir(args.model)
        payload["covariates"] = pool_covariates(args, model.covariate_names)
        result = schemas.recommend(model, schemas.parse_recommend(payload, labels),
                                   bounds=bounds_from_args(args, model.domains), labels=labels)
    for name in result["extrapolated"]:
        s = result["support"][name]
        log.warning("covariate %s=%.6g is outside the range the runs covered [%.6g, %.6g]; the estimate "
                    "there is an extrapolation", name, s["value"], s["min"], s["max"])
    if result["mixture_beyond_runs"]:
        log.warning("the mixture gives %s more weight than any run in the log had; the expected gain "
                    "there is an extrapolation", result["mixture_beyond_runs"])
    if result.get("fallback"):
        log.warning("%s", result["fallback"])
    log.info("%s", recommend_summary(result))
    print(json.dumps(result))
    return 0
