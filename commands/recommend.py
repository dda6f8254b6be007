"""`recommend`: recommend a mixture for a pool from a fitted model (one JSON object on the last line)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from causal.covariates import features_in, pool_covariates
from causal.model_dir import DEFAULT_TRUST_RADIUS, load_model_dir
from causal.policy import POLICIES, check_trust_radius
from causal.runs_table import read_frame
from commands.constraints import add_constraint_arguments, bounds_from_args
from core.errors import UserError
from mixture_space import MAX_TRUST_RADIUS
from core.logs import get_logger

log = get_logger(__name__)

HELP = "recommend a mixture for a pool from a fitted model"


def add_arguments(parser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="model directory written by `fit`")
    target.add_argument("--endpoint", help="URL of a running `launch.py serve` (e.g. http://127.0.0.1:8000)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--covariates", help="JSON file: {covariate name: value}")
    source.add_argument("--pool-features", dest="pool_features",
                        help="the pool's per-document features: a `featurize` output folder or a Parquet "
                        "file (covariates = per-domain means)")
    parser.add_argument("--policy", choices=POLICIES, default="analytic",
                        help="analytic (CausalMix-A), search (CausalMix-S) or top-k (RegMix's policy)")
    parser.add_argument("--trust-radius", dest="trust_radius", type=_radius, default=DEFAULT_TRUST_RADIUS,
                        help="auto (default: set by the runs' support and the gain's lower bound, "
                        f"docs/causal.md) or the L2 radius around the reference, at most {MAX_TRUST_RADIUS:.4f}")
    parser.add_argument("--reference", default="equal", help="'equal' or a JSON file {domain: weight}")
    parser.add_argument("--alpha", type=float, default=0.1,
                        help="interval level is 1 - alpha; the auto radius maximises that interval's lower bound")
    parser.add_argument("--top-k", dest="top_k", type=int, default=None,
                        help="search: average the top k candidates (default 1); top-k: 128")
    parser.add_argument("--seed", type=_seed, default=0, help="candidate sampling seed (>= 0)")
    add_constraint_arguments(parser)


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
    import argparse

    try:
        return check_trust_radius(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def read_json_file(path: str, what: str):
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} file not found: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} file {p} is not valid JSON: {exc}") from None


def covariates_from_features(path: str, names: list[str]) -> dict[str, float]:
    if Path(path).is_dir():
        from causal.features_io import load_features

        features = load_features(path)
    else:
        if not path.lower().endswith(".parquet"):
            raise UserError(f"pool features {path}: expected a Parquet file or a `featurize` output folder")
        features = read_frame(path, "pool features")
    computed = pool_covariates(features, sorted(set(features["domain"].astype(str))), features_in(names),
                               where=f"pool features {path}")
    missing = [n for n in names if n not in computed]
    if missing:
        raise UserError(f"pool features {path} do not give the model's covariates: missing {missing}; "
                        f"the file gives {sorted(computed)}")
    return {n: computed[n] for n in names}


def run(args) -> int:
    reference = "equal" if args.reference == "equal" else read_json_file(args.reference, "reference mixture")
    if args.endpoint:
        from actors.serve.client import model_info_via_endpoint, recommend_via_endpoint

        info = model_info_via_endpoint(args.endpoint)
        covariates = (read_json_file(args.covariates, "covariates") if args.covariates
                      else covariates_from_features(args.pool_features, info["covariate_names"]))
        bounds = bounds_from_args(args, info["domains"])
        result = recommend_via_endpoint(args.endpoint, {
            "covariates": covariates, "policy": args.policy, "trust_radius": args.trust_radius,
            "reference": reference, "alpha": args.alpha, "top_k": args.top_k, "seed": args.seed,
            **({"constraints": {"lower": bounds.to_json()["lower"], "upper": bounds.to_json()["upper"]}}
               if bounds is not None else {})})
    else:
        model = load_model_dir(args.model)
        covariates = (read_json_file(args.covariates, "covariates") if args.covariates
                      else covariates_from_features(args.pool_features, model.covariate_names))
        result = model.recommend(covariates, policy=args.policy, trust_radius=args.trust_radius,
                                 reference=reference, alpha=args.alpha, top_k=args.top_k, seed=args.seed,
                                 constraints=bounds_from_args(args, model.domains))
    for name in result["extrapolated"]:
        s = result["support"][name]
        log.warning("covariate %s=%.6g is outside the range the runs covered [%.6g, %.6g]; the estimate "
                    "there is an extrapolation", name, s["value"], s["min"], s["max"])
    if result["mixture_beyond_runs"]:
        log.warning("the mixture gives %s more weight than any run in the log had; the expected gain "
                    "there is an extrapolation", result["mixture_beyond_runs"])
    if result.get("fallback"):
        log.warning("%s", result["fallback"])
    print(json.dumps(result))
    return 0
