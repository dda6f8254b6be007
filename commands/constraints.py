"""The mixture-constraint flags shared by `recommend` (and, through it, `--endpoint`):
token budget, epoch cap, fixed weights and lower bounds (mixture_space/constraints.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from causalmix.core.config import read_json_file
from causalmix.core.errors import UserError
from causalmix.mixture_space import DEFAULT_MAX_EPOCHS, MixtureBounds

# Deferred on purpose, so that importing this module does not load pandas and pyarrow: the
# function-local imports (of these libraries or of this project's modules that import them).


def _weight_pair(text: str) -> tuple[str, float]:
    domain, sep, value = text.partition("=")
    try:
        if not sep or not domain:
            raise ValueError
        return domain, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected DOMAIN=WEIGHT, got {text!r}") from None


def add_constraint_arguments(parser, *, domain_tokens: bool = True) -> None:
    """The flags; `domain_tokens=False` where the command knows its pool (validate)."""
    group = parser.add_argument_group("mixture constraints (docs/causal.md, Constraints)")
    if domain_tokens:
        group.add_argument("--domain-tokens", dest="domain_tokens", default=None,
                           help="tokens per domain: a JSON file {domain: tokens} or a pool (folder or "
                           "manifest); with --target-tokens and --max-epochs it caps each domain's weight")
    group.add_argument("--target-tokens", dest="target_tokens", type=float, default=None,
                       help="token budget of the training run (default: the pool's total)")
    group.add_argument("--max-epochs", dest="max_epochs", type=float, default=None,
                       help=f"epochs of any one domain a mixture may use (default {DEFAULT_MAX_EPOCHS:g})")
    group.add_argument("--fix", action="append", type=_weight_pair, default=[], metavar="DOMAIN=W",
                       help="pin a domain's weight (repeatable)")
    group.add_argument("--min", dest="minimum", action="append", type=_weight_pair, default=[], metavar="DOMAIN=W",
                       help="lower bound of a domain's weight (repeatable)")


def read_domain_tokens(path: str) -> dict[str, float]:
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".json":
        counts = read_json_file(p, "domain tokens")
        bad = {} if isinstance(counts, dict) else {"<file>": counts}
        bad.update({d: v for d, v in (counts.items() if isinstance(counts, dict) else [])
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0})
        if bad:
            raise UserError(f"domain tokens file {p}: expected {{domain: non-negative number}}, bad entries {bad}")
        return {d: float(v) for d, v in counts.items()}
    from causalmix.datapool.export import domain_token_counts
    from causalmix.datapool.pool import Pool

    return {d: float(v) for d, v in domain_token_counts(Pool.open(p, build_if_needed=False)).items()}


def bounds_from_args(args, domains: list[str]) -> MixtureBounds | None:
    """The constraints the flags give, or None when none was given."""
    if args.domain_tokens is None and args.target_tokens is not None:
        raise UserError("--target-tokens needs --domain-tokens (the pool's tokens per domain)")
    if args.domain_tokens is None and not args.fix and not args.minimum:
        return None
    tokens = read_domain_tokens(args.domain_tokens) if args.domain_tokens else None
    return MixtureBounds.build(domains, domain_tokens=tokens, target_tokens=args.target_tokens,
                               max_epochs=DEFAULT_MAX_EPOCHS if args.max_epochs is None else args.max_epochs,
                               fixed=dict(args.fix), minimum=dict(args.minimum))


def constraint_overrides(args) -> dict:
    """The flags as config overrides (None where not given, so the config's defaults hold)."""
    return {"target_tokens": args.target_tokens, "max_epochs": args.max_epochs,
            "fix": dict(args.fix) or None, "minimum": dict(args.minimum) or None}
