"""Demo stages reused only when their inputs' fingerprints match (issue 18 case 8): the
decision over recorded fingerprints, and the stage loop on stand-in stages (no Ray)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from causalmix.commands.demo import STAGES
from causalmix.commands.demo_stages import (FRESH, REUSE, RUN, Stage, decide, fingerprint_files, read_record,
                                  run_stages)

INPUTS = {"sweep": "a" * 64, "settings": "s" * 64}


def test_decide_reuses_only_matching_finished_stages():
    done = {"status": "done", "inputs": INPUTS}
    assert decide(done, INPUTS, complete=True, upstream_ran=True).action == REUSE
    changed = decide(done, {**INPUTS, "sweep": "b" * 64}, complete=True, upstream_ran=True)
    assert changed.action == FRESH and "sweep" in changed.reason
    assert decide(done, {**INPUTS, "settings": "t" * 64}, complete=True, upstream_ran=False).action == FRESH
    running = {"status": "running", "inputs": INPUTS}
    assert decide(running, INPUTS, complete=False, upstream_ran=False).action == RUN
    assert decide(running, {**INPUTS, "sweep": "b" * 64}, complete=False, upstream_ran=False).action == FRESH
    assert decide(done, INPUTS, complete=False, upstream_ran=False).action == RUN  # outputs removed
    # no record: outputs from before the records are adopted unless a stage they read ran again
    assert decide(None, INPUTS, complete=True, upstream_ran=False).action == REUSE
    assert decide(None, INPUTS, complete=True, upstream_ran=True).action == FRESH
    assert decide(None, INPUTS, complete=False, upstream_ran=False).action == RUN


def test_fingerprint_follows_the_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("1")
    first = fingerprint_files([tmp_path / "d", tmp_path / "f.json"])
    assert fingerprint_files([tmp_path / "d", tmp_path / "f.json"]) == first
    (tmp_path / "f.json").write_text("{}")
    second = fingerprint_files([tmp_path / "d", tmp_path / "f.json"])
    (tmp_path / "d" / "x").write_text("2")
    assert len({first, second, fingerprint_files([tmp_path / "d", tmp_path / "f.json"])}) == 3


@dataclass(frozen=True)
class Settings:
    rows: int = 3


def _stages(calls: list[str]) -> list[Stage]:
    """sweep -> fit -> validate stand-ins: each writes its output from its input's content."""

    def writer(name, source, target):
        def run(cfg, work):
            calls.append(name)
            text = (work / source).read_text() if source else "rows" * cfg.rows
            (work / target).write_text(f"{name}({text})")
            return {}
        return run

    def exists(target):
        return lambda cfg, work: (work / target).is_file()

    return [Stage("sweep", writer("sweep", None, "runs.txt"), exists("runs.txt"),
                  lambda w: [w / "runs.txt"], settings=("rows",), kept=("runs.txt",)),
            Stage("fit", writer("fit", "runs.txt", "model.txt"), exists("model.txt"),
                  lambda w: [w / "model.txt"], reads=("sweep",)),
            Stage("validate", writer("validate", "model.txt", "val.txt"), exists("val.txt"),
                  lambda w: [w / "val.txt"], reads=("fit",))]


def test_a_new_sweep_reruns_every_stage_after_it(tmp_path):
    calls: list[str] = []
    stages = _stages(calls)
    timings, _ = run_stages(stages, Settings(), tmp_path)
    assert calls == ["sweep", "fit", "validate"] and all(isinstance(t, float) for t in timings.values())
    timings, _ = run_stages(stages, Settings(), tmp_path)
    assert calls == ["sweep", "fit", "validate"] and set(timings.values()) == {"reused"}
    # a new sweep (the runs table rewritten): fit and validate are redone, not reused
    (tmp_path / "runs.txt").write_text("a new sweep")
    run_stages(stages, Settings(), tmp_path)
    assert calls[3:] == ["fit", "validate"]
    assert (tmp_path / "val.txt").read_text() == "validate(fit(a new sweep))"
    # other settings of the sweep: it runs fresh (what it kept removed first), then the rest
    run_stages(stages, Settings(rows=1), tmp_path)
    assert calls[5:] == ["sweep", "fit", "validate"]
    assert read_record(tmp_path, "validate")["status"] == "done"
    # an interrupted stage (record left running) runs again with its inputs
    record = tmp_path / "stages" / "fit.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "status": "running"}))
    run_stages(stages, Settings(rows=1), tmp_path, until="fit")
    assert calls[8:] == ["fit"]


def test_the_demo_stages_read_only_earlier_stages():
    names = [s.name for s in STAGES]
    for i, stage in enumerate(STAGES):
        assert set(stage.reads) <= set(names[:i]), stage.name
    # a new sweep reaches every later stage through what they read
    after_sweep = {"sweep"}
    for stage in STAGES:
        if after_sweep & set(stage.reads):
            after_sweep.add(stage.name)
    assert after_sweep == {"sweep", "fit", "recommend", "validate", "report"}
    assert Path(STAGES[names.index("sweep")].outputs(Path("/w"))[0]).name == "runs.parquet"
