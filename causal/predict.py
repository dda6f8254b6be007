"""Predicted outcomes of a runs table's rows from a fitted model, after the checks `predict`
makes (its domains and covariates must be the model's)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from causalmix.causal.runs_table import MIX
from causalmix.core.errors import UserError


def predict_table(fitted, table, *, where: str) -> pd.DataFrame:
    """`predict`'s rows, after its checks: the table's domains and covariates are the model's."""
    missing = [d for d in fitted.domains if d not in table.domains]
    extra = [d for d in table.domains if d not in fitted.domains]
    if missing or extra:
        raise UserError(f"{where}: mixture domains do not match the model's: missing "
                        f"{[MIX + d for d in missing]}, extra {[MIX + d for d in extra]}")
    missing_x = [c for c in fitted.covariate_names if c not in table.covariate_names]
    if missing_x:
        raise UserError(f"{where}: missing covariate columns {missing_x}")
    frame = table.frame
    y_pred = fitted.predict(frame[[MIX + d for d in fitted.domains]].to_numpy(float),
                            frame[fitted.covariate_names].to_numpy(float).reshape(len(frame), -1))
    return pd.DataFrame({"run_id": frame["run_id"].to_numpy(), "y_pred": np.asarray(y_pred, dtype=float)})
