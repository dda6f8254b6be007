"""Which demo stages to reuse: fingerprints of each stage's inputs, recorded per stage (no Ray).

A stage's inputs are the outputs of the stages it reads (hashed from their files) and the
demo settings it depends on. When a stage starts, WORKDIR/stages/NAME.json records the
fingerprints of its inputs (status `running`); when it finishes, status `done`. On a rerun
`decide` compares them with the current fingerprints:

- same inputs, done, outputs complete: reuse;
- same inputs, not done (interrupted): run, resuming what the stage kept (the sweep's Tune
  experiment, the validation's landed runs);
- other inputs (e.g. a new sweep under fit, recommend, validate and report): run fresh,
  discarding what the stage kept, since it was made from other inputs;
- no record (a workdir from before these records, or outputs put there by hand): adopted as
  done when complete and no stage it reads ran in this invocation; run fresh when one did.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from causalmix.core.atomic import atomic_write_json
from causalmix.core.logs import get_logger

log = get_logger(__name__)

RECORDS_DIR = "stages"
REUSE, RUN, FRESH = "reuse", "run", "fresh"


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Any, Path], dict]
    """Runs the stage: (demo config, workdir) -> its summary."""
    done: Callable[[Any, Path], bool]
    """Whether its outputs are complete."""
    outputs: Callable[[Path], list[Path]]
    """The files (or folders) that later stages read: their hash is the stage's fingerprint."""
    reads: tuple[str, ...] = ()
    """Earlier stages whose outputs are its inputs."""
    settings: tuple[str, ...] = ()
    """Demo config fields it depends on."""
    kept: tuple[str, ...] = ()
    """Workdir paths it keeps to resume from, removed before a fresh run."""


@dataclass(frozen=True)
class Decision:
    action: str
    """reuse, run (resuming what the stage kept) or fresh (discarding it)."""
    reason: str
    """Why, in words (printed by the demo)."""


def decide(record: Mapping | None, inputs: Mapping[str, str], *, complete: bool,
           upstream_ran: bool) -> Decision:
    """The stage's action from its record (None: none), its inputs' current fingerprints,
    whether its outputs are complete, and whether a stage it reads ran in this invocation."""
    if record is None:
        if upstream_ran:  # whatever it holds was made before the stages it reads ran again
            return Decision(FRESH, "not done yet" if not complete else
                            "no fingerprint recorded and a stage it reads ran again")
        if complete:
            return Decision(REUSE, "complete, no fingerprint recorded (adopted)")
        return Decision(RUN, "not done yet")
    recorded = record.get("inputs", {})
    changed = sorted(k for k in set(recorded) | set(inputs) if recorded.get(k) != inputs.get(k))
    if changed:
        return Decision(FRESH, f"inputs changed since it ran: {', '.join(changed)}")
    if record.get("status") == "done" and complete:
        return Decision(REUSE, "inputs unchanged")
    return Decision(RUN, "interrupted; resuming with the same inputs")


def fingerprint_files(paths: Iterable[str | Path]) -> str:
    """sha256 over the files at `paths` (folders: every file under them, by relative path);
    a missing path counts as absent, so that its appearance changes the fingerprint."""
    digest = hashlib.sha256()
    for root in sorted(Path(p) for p in paths):
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for path in files:
            if not path.is_file():
                digest.update(f"missing:{root}".encode())
                continue
            digest.update(str(path.relative_to(root.parent)).encode())
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
    return digest.hexdigest()


def settings_fingerprint(values: Mapping) -> str:
    return hashlib.sha256(json.dumps(dict(values), sort_keys=True, default=str).encode()).hexdigest()


def record_path(work: Path, stage: str) -> Path:
    return Path(work) / RECORDS_DIR / f"{stage}.json"


def read_record(work: Path, stage: str) -> dict | None:
    path = record_path(work, stage)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None  # unreadable: as if none (the stage reruns or is adopted)
    return record if isinstance(record, dict) else None


def write_record(work: Path, stage: str, inputs: Mapping[str, str], status: str) -> None:
    atomic_write_json(record_path(work, stage), {"stage": stage, "status": status, "inputs": dict(inputs)})


def stage_inputs(stage: Stage, cfg, fingerprints: Mapping[str, str]) -> dict[str, str]:
    inputs = {name: fingerprints[name] for name in stage.reads}
    inputs["settings"] = settings_fingerprint({f: getattr(cfg, f) for f in stage.settings})
    return inputs


def run_stages(stages: Iterable[Stage], cfg, work: Path, *, until: str | None = None,
               before_run: Callable[[Stage], None] = lambda stage: None) -> tuple[dict, dict]:
    """Run or reuse each stage in order (see `decide`), recording its inputs; stops after
    `until`. Returns ({stage: seconds or "reused"}, {stage: its summary})."""
    work = Path(work)
    timings, results, fingerprints, ran = {}, {}, {}, set()
    for stage in stages:
        inputs = stage_inputs(stage, cfg, fingerprints)
        record = read_record(work, stage.name)
        decision = decide(record, inputs, complete=stage.done(cfg, work),
                          upstream_ran=any(name in ran for name in stage.reads))
        if decision.action == REUSE:
            log.info("[demo] %s: reusing %s (%s)", stage.name, work, decision.reason)
            timings[stage.name] = "reused"
            if record is None:
                write_record(work, stage.name, inputs, "done")
        else:
            if decision.action == FRESH:
                for rel in stage.kept:
                    shutil.rmtree(work / rel, ignore_errors=True)
            before_run(stage)
            log.info("[demo] %s: running (%s)", stage.name, decision.reason)
            write_record(work, stage.name, inputs, "running")
            start = time.perf_counter()
            results[stage.name] = stage.run(cfg, work)
            timings[stage.name] = round(time.perf_counter() - start, 1)
            write_record(work, stage.name, inputs, "done")
            ran.add(stage.name)
        fingerprints[stage.name] = fingerprint_files(stage.outputs(work))
        if stage.name == until:
            break
    return timings, results
