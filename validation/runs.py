"""Validation runs landed one by one in VAL_DIR/runs/, and the resume check over them (no Ray).

Every (mixture, seed) training run lands as its own JSON file the moment it finishes
(written to a temporary name, then renamed), so an interrupted validation, or one whose run
failed, keeps every finished run. Each file carries the run's row, its candidate, seed and
mixture, and the settings that decide what a run trains (the target model's fingerprint, the
pool and its shards, the features file, every training setting). `validate --resume` reuses
a landed run only when all of these match the resumed validation, and refuses the resume,
naming what differs, otherwise: a table that mixed runs trained under different settings
would compare them as if they were paired.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Mapping

from causalmix.core.atomic import atomic_write_json
from causalmix.core.errors import UserError

RUNS_DIR = "runs"
SETTINGS_FILE = "validation_settings.json"
"""What an unfinished validation folder holds besides runs/: the settings its runs share."""
FAILURES_FILE = "failures.json"
MIXTURE_TOL = 1e-9
"""Largest weight difference under which a landed run's mixture is the candidate's."""


def run_name(candidate: str, seed: int) -> str:
    return f"{candidate}-seed{seed}"


def _file_name(candidate: str, seed: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", candidate)
    if safe != candidate:  # two names that sanitise alike must not share a file
        safe += "-" + hashlib.sha256(candidate.encode()).hexdigest()[:8]
    return f"{safe}-seed{seed}.json"


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def settings_differences(landed: Mapping, now: Mapping) -> list[str]:
    """'field: landed A, now B' for every setting (nested keys dotted) that differs."""
    a, b = _flatten(landed), _flatten(now)
    return [f"{key}: landed {a.get(key)!r}, now {b.get(key)!r}"
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def _mixture_differs(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    return set(a) != set(b) or any(not math.isclose(a[d], b[d], abs_tol=MIXTURE_TOL) for d in a)


class LandedRuns:
    """VAL_DIR/runs/: one file per finished (candidate, seed)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.dir = self.out / RUNS_DIR

    def records(self) -> list[dict]:
        if not self.dir.is_dir():
            return []
        records = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                missing = [k for k in ("candidate", "seed", "row") if k not in record]
            except (ValueError, TypeError) as exc:
                record, missing = None, [str(exc)]
            if not isinstance(record, dict) or missing:
                raise UserError(f"landed validation run {path} is unreadable (missing or bad: "
                                f"{', '.join(missing)}); remove it to train that run again")
            records.append(record)
        return records

    def land(self, candidate: str, seed: int, mixture: Mapping[str, float], settings: Mapping,
             row: Mapping) -> Path:
        return atomic_write_json(self.dir / _file_name(candidate, seed),
                                 {"candidate": candidate, "seed": int(seed), "mixture": dict(mixture),
                                  "settings": dict(settings), "row": dict(row)})

    def reusable(self, settings: Mapping, candidates: Mapping[str, Mapping[str, float]],
                 seeds: int) -> dict[tuple[str, int], dict]:
        """The landed rows a resume keeps, by (candidate, seed). Refuses (UserError) when a
        landed run was trained under other settings, or when a candidate's mixture is no longer
        the one its landed runs trained on (the model or the constraints changed). Landed runs
        of candidates or seeds this validation does not ask for are left out."""
        keep, problems = {}, []
        for record in self.records():
            name = run_name(record["candidate"], record["seed"])
            differences = settings_differences(record.get("settings", {}), settings)
            if differences:
                problems.append(f"{name}: " + "; ".join(differences[:4]))
                continue
            mixture = candidates.get(record["candidate"])
            if mixture is None or not 0 <= record["seed"] < seeds:
                continue
            if _mixture_differs(record["mixture"], mixture):
                problems.append(f"{name}: trained on {record['mixture']}, the candidate is now {dict(mixture)}")
                continue
            keep[(record["candidate"], record["seed"])] = record["row"]
        if problems:
            raise UserError(f"--resume: {len(problems)} landed run(s) in {self.dir} do not match this "
                            f"validation: {' | '.join(problems[:3])}. Resume with the same settings, "
                            "or start again with --overwrite or another --out")
        return keep


def write_failures(out: str | Path, failures: list[dict]) -> Path:
    return atomic_write_json(Path(out) / FAILURES_FILE, {"failed": failures})
