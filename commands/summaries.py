"""Human-readable summaries that `fit` and `recommend` write to stderr (the `causalmix` logger at
info) beside the JSON they print on stdout, so that a person sees the choice without reading
JSON and a pipeline still parses stdout."""
from __future__ import annotations

from typing import Mapping, Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, the first left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def fit_summary(record: Mapping) -> str:
    """The candidates `fit --estimator auto` scored (out-of-fold), which one it chose and why,
    or the one estimator fitted."""
    head = (f"fitted {record['estimator']} on {record['n_runs']} runs x {len(record['domains'])} domains x "
            f"{len(record['covariate_names'])} covariates in {record['fit_s']:.1f} s -> {record['model_dir']}")
    selection = record.get("selection")
    if not selection:
        return head
    rows = [[name, f"{s['oof_mse']:.4g}", f"{s['oof_r2']:.3f}", f"{s['oof_spearman']:.3f}",
             "<- chosen" if name == selection["chosen"] else ""] for name, s in selection["scores"].items()]
    lines = [f"candidates, {selection['folds']}-fold out-of-fold outcome error (lowest MSE is chosen):",
             text_table(["candidate", "MSE", "R2", "Spearman", ""], rows)]
    lines += [f"skipped {name}: {why}" for name, why in selection.get("skipped", {}).items()]
    evidence = selection.get("mixture_evidence")
    if evidence:
        lines.append(f"covariates alone ({evidence['covariates_only']}): MSE {evidence['covariates_only_oof_mse']:.4g}; "
                     f"the mixture helps with p = {evidence['p_value']:.3g} (at p >= alpha recommend does not "
                     "move from the reference)")
    return "\n".join([*lines, head])


def recommend_summary(result: Mapping) -> str:
    """The mixture beside the reference, the expected gain with its interval, and how far the
    trust radius let it move and why."""
    mixture, reference = result["mixture"], result["reference"]
    rows = [[d, f"{mixture[d]:.3f}", f"{reference.get(d, 0.0):.3f}", f"{mixture[d] - reference.get(d, 0.0):+.3f}"]
            for d in sorted(mixture, key=lambda d: -mixture[d])]
    low, high = result["interval"]
    level = round(100 * (1 - result.get("alpha", 0.1)))
    lines = [f"{result['policy']} mixture (model version {result.get('model_version')}):",
             text_table(["domain", "mixture", "reference", "change"], rows),
             f"expected gain over the reference {result['expected_gain']:+.4g} ({level} % interval "
             f"[{low:+.4g}, {high:+.4g}])"]
    choice = result.get("radius_choice")
    if choice:
        lines.append(f"trust radius {choice['radius']:.3f} ({choice['mode']}): {choice['reason']}")
    elif result.get("trust_radius") is not None:
        lines.append(f"trust radius {result['trust_radius']:.3f}")
    return "\n".join(lines)
