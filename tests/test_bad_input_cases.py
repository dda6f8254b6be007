"""Issue 29: every command's bad input, collision and system failure, as a table. Each case
runs `launch.main` in this process on a fresh copy of one small project (a built pool, a
runs table, a fitted model, covariates) and asserts the exit status (core/exit_codes.py),
the one-line message, and that nothing under the project changed: no input replaced or
touched, nothing half-written."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
import yaml

from causalmix import launch
from tests.serve_model import DOMAINS, synthetic_runs

POOL = {f"x.{d}.normalized_loss": 0.5 for d in DOMAINS}


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _manifest(path: Path, source: str = "raw/*.jsonl", **extra) -> Path:
    path.write_text(yaml.safe_dump({"name": "t", "domains": [
        {"name": "math", "sources": [{"path": source, "columns": {"prompt": "q", "response": "a"}, **extra}]},
        {"name": "chat", "sources": [{"path": "chat/*.jsonl", "columns": {"prompt": "q", "response": "a"}}]}]}))
    return path


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    _jsonl(root / "raw" / "a.jsonl", [{"q": f"{i}+1?", "a": str(i + 1)} for i in range(6)])
    _jsonl(root / "chat" / "b.jsonl", [{"q": f"hi {i}", "a": "hello"} for i in range(4)])
    _manifest(root / "pool.yaml")
    assert launch.main(["pool", "build", str(root / "pool.yaml"), "--out", str(root / "pool")]) == 0
    synthetic_runs(40, seed=0).to_parquet(root / "runs.parquet", index=False)
    assert launch.main(["fit", "--runs", str(root / "runs.parquet"), "--out", str(root / "model"),
                        "--estimator", "regression"]) == 0
    (root / "cov.json").write_text(json.dumps(POOL))
    (root / "mix.json").write_text(json.dumps({"math": 0.5, "chat": 0.5}))
    pd.DataFrame({"run": ["a", "b"], "mix_x": [0.5, 1.0], "mix_y": [0.5, 0.0], "eval/loss": [1.0, 2.0]}) \
        .to_parquet(root / "table.parquet", index=False)
    (root / "a_folder").mkdir()
    return root


@pytest.fixture
def project(template, tmp_path) -> Path:
    root = tmp_path / "p"
    shutil.copytree(template, root)
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def _write(rel: str, data: bytes | str):
    def setup(root: Path, monkeypatch) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return setup


def _runs_with(column: str, value: float):
    def setup(root: Path, monkeypatch) -> None:
        frame = synthetic_runs(40, seed=0)
        frame.loc[3, column] = value
        frame.to_parquet(root / "odd.parquet", index=False)
    return setup


def _bad_document(value):
    def setup(root: Path, monkeypatch) -> None:
        _jsonl(root / "raw" / "c.jsonl", [{"q": "fine", "a": "ok"}, {"q": value, "a": "x"}])
    return setup


def _fail_writes(target: str, err: int = errno.ENOSPC):
    """Every write through `target` (module.attribute) fails as a full disk would."""
    def setup(root: Path, monkeypatch) -> None:
        def fail(*args, **kwargs):
            raise OSError(err, os.strerror(err), str(args[0]) if args else None)
        monkeypatch.setattr(target, fail)
    return setup


def _port_in_use(root: Path, monkeypatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    monkeypatch.setenv("BUSY_PORT", str(listener.getsockname()[1]))
    _LISTENERS.append(listener)


_LISTENERS: list[socket.socket] = []


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A manifest whose hf.data_files (a field that takes anything) expands to 9**10 values."""
    anchors = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    anchors += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return ("\n".join(anchors) + f"\nname: t\ndomains:\n  - name: math\n    sources:\n"
            f"      - hf: {{name: x, data_files: *a{levels}}}\n")


def _shard_overwritten(root: Path, monkeypatch) -> None:
    """What `featurize --pool P --out P` did before: a feature table where a document shard was."""
    pd.DataFrame({"doc_id": ["d"], "normalized_loss": [0.1]}).to_parquet(
        root / "pool" / "shards" / "math" / "shard-00000.parquet", index=False)


# name: (setup or None, argv with {p} for the project folder, exit status, message)
CASES = {
    # ---- no command writes over, into, or around its own input
    "featurize --out its pool": (None, "featurize --pool {p}/pool --model m --out {p}/pool", 2, "holds the input"),
    "featurize --out inside its pool": (None, "featurize --pool {p}/pool --model m --out {p}/pool/shards/f", 2,
                                        "lies inside the input"),
    "featurize --out its manifest": (None, "featurize --pool {p}/pool.yaml --model m --out {p}/pool.yaml", 2,
                                     "is the input"),
    "predict --out its runs": (None, "predict --model {p}/model --runs {p}/runs.parquet --out {p}/runs.parquet", 2,
                               "is the input"),
    "predict --out its model": (None, "predict --model {p}/model --runs {p}/runs.parquet --out {p}/model", 2,
                                "is the input"),
    "predict --out a folder": (None, "predict --model {p}/model --runs {p}/runs.parquet --out {p}/a_folder", 2,
                               "is a folder"),
    "predict --out under a file": (None, "predict --model {p}/model --runs {p}/runs.parquet --out {p}/cov.json/y.parquet",
                                   2, "cov.json is a file, not a folder"),
    "import-swarm --out its table": (None, "import-swarm --table {p}/table.parquet --weights mix_* --metrics eval/* "
                                           "--target loss --out {p}/table.parquet", 2, "is the input"),
    "import-regmix --out its mixtures": (None, "import-regmix --mixtures {p}/runs.parquet --losses {p}/runs.parquet "
                                               "--target mean --out {p}/runs.parquet", 2, "is the input"),
    "import-regmix --out not parquet": (None, "import-regmix --mixtures {p}/a.csv --losses {p}/b.csv --target mean "
                                              "--out {p}/runs.csv", 2, "write the runs table as .parquet"),
    "pool build --out its manifest": (None, "pool build {p}/pool.yaml --out {p}/pool.yaml", 2,
                                      "exists and is not a folder"),
    "fit --out under a file": (None, "fit --runs {p}/runs.parquet --out {p}/cov.json/model --estimator regression", 2,
                               "cov.json is a file, not a folder"),
    "fit --out its runs' folder": (None, "fit --runs {p}/runs.parquet --out {p} --estimator regression", 2,
                                   "holds the input"),
    "export --out its pool": (None, "export --pool {p}/pool --mixture {p}/mix.json --tokens 100 --out {p}/pool", 2,
                              "holds the input"),
    "export --out its mixture": (None, "export --pool {p}/pool --mixture {p}/mix.json --tokens 100 --out {p}/mix.json",
                                 2, "is the input"),
    "sweep --out its pool": (None, "sweep --pool {p}/pool --features {p}/feat.parquet --model m --runs 2 --out {p}/pool",
                             2, "holds the input"),
    "report --out its runs": (None, "report --run-dir {p} --out {p}/runs.parquet", 2, "is the input"),
    "report --out its model": (None, "report --run-dir {p} --out {p}/model/report", 2, "lies inside the input"),
    # ---- input parsing with limits
    "manifest not UTF-8": (_write("bad.yaml", b"name: caf\xe9\n"), "pool build {p}/bad.yaml --out {p}/new", 2,
                           "bad.yaml is not UTF-8 text: byte 9 (line 1)"),
    "covariates not UTF-8": (_write("bad.json", b'{"x": "\xff"}'), "recommend --model {p}/model --covariates {p}/bad.json",
                             2, "bad.json is not UTF-8 text: byte 7"),
    "--config not UTF-8": (_write("bad.yaml", b"cv: 3\n# \xfe\n"),
                           "fit --runs {p}/runs.parquet --out {p}/new --config {p}/bad.yaml", 2,
                           "bad.yaml is not UTF-8 text: byte 8 (line 2)"),
    "YAML alias bomb": (_write("bomb.yaml", _alias_bomb()), "pool build {p}/bomb.yaml --out {p}/new", 2,
                        "anchors and aliases expand to more than"),
    "JSON 100,000 deep": (_write("deep.json", "[" * 100_000 + "]" * 100_000),
                          "recommend --model {p}/model --covariates {p}/deep.json", 2, "nested more than 64 levels"),
    "y = 1e308": (_runs_with("y", 1e308), "fit --runs {p}/odd.parquet --out {p}/new --estimator regression", 2,
                  "outcome 1e+308 in column 'y' is beyond"),
    "covariate = -1e308": (_runs_with("x.chat.normalized_loss", -1e308),
                           "fit --runs {p}/odd.parquet --out {p}/new --estimator regression", 2,
                           "value -1e+308 in column 'x.chat.normalized_loss' is beyond"),
    "prompt a number": (_bad_document(12345), "pool build {p}/pool.yaml --out {p}/new", 2,
                        "c.jsonl line 2: column 'q' holds '12345' (int), not text"),
    "prompt a list": (_bad_document(["a", "b"]), "pool build {p}/pool.yaml --out {p}/new", 2, "(list), not text"),
    "prompt null": (_bad_document(None), "pool build {p}/pool.yaml --out {p}/new", 2, "(null), not text"),
    "covariate true": (_write("t.json", json.dumps({**POOL, "x.chat.normalized_loss": True})),
                       "recommend --model {p}/model --covariates {p}/t.json", 2,
                       "covariates file {p}/t.json: x.chat.normalized_loss: Input should be a valid number"),
    "search --top-k 0": (None, "recommend --model {p}/model --covariates {p}/cov.json --policy search --top-k 0", 2,
                         "--top-k: Input should be greater than or equal to 1"),
    "shards without documents": (_shard_overwritten,
                                 "export --pool {p}/pool --mixture {p}/mix.json --tokens 100 --out {p}/new", 2,
                                 "shard-00000.parquet lacks column(s) ['prompt', 'response']"),
    # ---- the system refuses: one line, exit 3, nothing half-written
    "disk full during predict": (_fail_writes("pyarrow.parquet.write_table"),
                                 "predict --model {p}/model --runs {p}/runs.parquet --out {p}/y.parquet", 3,
                                 "No space left on device"),
    "disk full during pool build": (_fail_writes("pyarrow.parquet.write_table"),
                                    "pool build {p}/pool.yaml --out {p}/newpool/inner", 3, "No space left on device"),
    "disk full during fit": (_fail_writes("causalmix.core.atomic.os.replace"),
                             "fit --runs {p}/runs.parquet --out {p}/new --estimator regression", 3,
                             "No space left on device"),
    "permission denied": (_fail_writes("pyarrow.parquet.write_table", errno.EACCES),
                          "import-swarm --table {p}/table.parquet --weights mix_* --metrics eval/* --target loss "
                          "--out {p}/t2.parquet", 3, "Permission denied"),
    "--out /proc/x": (None, "predict --model {p}/model --runs {p}/runs.parquet --out /proc/x.parquet", 3,
                      "/proc/x.parquet"),
    "serve on a port in use": (_port_in_use, "serve --model {p}/model --port $BUSY_PORT", 3,
                               "address already in use: 127.0.0.1:"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_a_status_and_no_change(project, monkeypatch, capsys, case):
    setup, argv, status, message = CASES[case]
    if setup is not None:
        setup(project, monkeypatch)
    before = _snapshot(project)
    args = [os.path.expandvars(a.replace("{p}", str(project))) for a in argv.split()]
    try:
        assert launch.main(args) == status
    finally:
        while _LISTENERS:
            _LISTENERS.pop().close()
    err = capsys.readouterr().err
    assert message.replace("{p}", str(project)) in err, err
    assert "Traceback" not in err and len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert _snapshot(project) == before


def test_an_unexpected_error_is_one_line_and_exit_70_with_the_traceback_at_debug(project, monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr("causalmix.causal.predict.predict_table", boom)  # predict imports it when run
    argv = ["predict", "--model", str(project / "model"), "--runs", str(project / "runs.parquet")]
    assert launch.main(argv) == 70
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: unexpected RuntimeError: something nobody foresaw (a bug, please "
                                        "report it; rerun with --log-level debug for the traceback)"]
    assert launch.main([*argv, "--log-level", "debug"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "something nobody foresaw" in err


def test_a_symlink_loop_under_a_glob_ingests_each_file_once(project):
    """Issue 29, case 4: 100 documents under `**` with a link back to their folder (41x before)."""
    _jsonl(project / "deep" / "docs.jsonl", [{"q": f"q{i}", "a": "a"} for i in range(100)])
    (project / "deep" / "loop").symlink_to(project / "deep")
    (project / "deep" / "again").symlink_to(project / "deep")
    (project / "deep" / "same.jsonl").symlink_to(project / "deep" / "docs.jsonl")
    _manifest(project / "loop.yaml", source="deep/**/*.jsonl")
    assert launch.main(["pool", "build", str(project / "loop.yaml"), "--out", str(project / "lp")]) == 0
    index = json.loads((project / "lp" / "pool.json").read_text())
    assert index["domains"]["math"]["n_docs"] == 100


def test_a_domain_unused_by_every_run_is_dropped_with_a_warning(project, capsys):
    """Issue 29, case 6: `mix.extra` is 0 in every run; fitted silently before, and recommended 3.7 %."""
    frame = synthetic_runs(40, seed=0)
    frame.insert(1, "mix.extra", 0.0)
    frame.to_parquet(project / "extra.parquet", index=False)
    assert launch.main(["fit", "--runs", str(project / "extra.parquet"), "--out", str(project / "m2"),
                        "--estimator", "regression"]) == 0
    assert "domain(s) ['extra'] have weight 0 in every run" in capsys.readouterr().err
    assert launch.main(["recommend", "--model", str(project / "m2"), "--covariates", str(project / "cov.json")]) == 0
    assert set(json.loads(capsys.readouterr().out.splitlines()[-1])["mixture"]) == set(DOMAINS)


def test_a_failed_pool_build_leaves_no_folder_it_made(project, monkeypatch):
    _bad_document(12345)(project, monkeypatch)
    assert launch.main(["pool", "build", str(project / "pool.yaml"), "--out", str(project / "a" / "b")]) == 2
    assert not (project / "a").exists()
