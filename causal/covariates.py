"""Covariates of a pool from its per-document features: `x.<domain>.<feature>` = mean over the
domain's documents (DESIGN.md), so a new pool needs featurizing, not proxy runs."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from core.errors import UserError

BASE_FEATURES = ("normalized_loss", "hes", "writing_style")


def default_feature_names(features: pd.DataFrame) -> list[str]:
    return [c for c in BASE_FEATURES if c in features.columns] + sorted(
        c for c in features.columns if c.startswith("style."))


def pool_covariates(features: pd.DataFrame, feature_names: Sequence[str] | None = None,
                    *, where: str = "features table") -> dict[str, float]:
    """Per-domain means of the feature columns, named `x.<domain>.<feature>` (sorted)."""
    if "domain" not in features.columns:
        raise UserError(f"{where}: missing column 'domain'")
    names = list(feature_names) if feature_names is not None else default_feature_names(features)
    if not names:
        raise UserError(f"{where}: no feature columns ({', '.join(BASE_FEATURES)}, style.*)")
    missing = [n for n in names if n not in features.columns]
    if missing:
        raise UserError(f"{where}: missing feature columns {missing}")
    values = features[names].apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & features[names].notna()
    if bad.any().any():
        raise UserError(f"{where}: non-numeric values in columns {list(bad.columns[bad.any()])}")
    means = values.groupby(features["domain"].astype(str)).mean()
    empty = means.columns[means.isna().any()]
    if len(empty):
        raise UserError(f"{where}: features {list(empty)} have no values for some domain")
    return {f"x.{dom}.{feat}": float(means.at[dom, feat])
            for dom in sorted(means.index) for feat in names}
