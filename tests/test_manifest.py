"""Pool manifests: good ones build into shards with stable doc_ids; bad ones fail cleanly."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from causalmix import launch
from causalmix.datapool.build import build_pool
from causalmix.datapool.pool import Pool


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def raw(tmp_path):
    _write_jsonl(tmp_path / "raw/math/a.jsonl", [{"q": "1+1?", "a": "2"}, {"q": "2+2?", "a": "4"}])
    _write_jsonl(tmp_path / "raw/math/b.jsonl", [{"q": "1+1?", "a": "2"}, {"q": "3+3?", "a": ""}])
    pd.DataFrame({"content": ["naïve café 日本語 🚀 text", "second doc\nwith lines"]}).to_parquet(
        tmp_path / "raw/web.parquet")
    _write_jsonl(tmp_path / "raw/math_dev.jsonl", [{"q": "5+5?", "a": "The answer is 10."}])
    return tmp_path


def _manifest(tmp_path, data, name="manifest.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


GOOD = {
    "name": "toy",
    "shard_size": 3,
    "domains": [
        {"name": "math", "sources": [{"path": "raw/math/*.jsonl", "columns": {"prompt": "q", "response": "a"}}],
         "dev": {"path": "raw/math_dev.jsonl", "columns": {"prompt": "q", "response": "a"}, "metric": "exact_match"}},
        {"name": "web", "sources": [{"path": "raw/web.parquet", "columns": {"text": "content"}}]},
    ],
}


def test_good_manifest_builds_shards_per_domain(raw):
    out = build_pool(_manifest(raw, GOOD), raw / "built")
    pool = Pool.open(out)
    assert pool.domains == ["math", "web"]
    assert [s.n_docs for s in pool.shards("math")] == [2, 2]  # shards never mix source files
    math = pool.read("math")
    assert math["doc_id"].is_unique
    assert math["response"].tolist() == ["2", "4", "2", ""]
    web = pool.read("web")
    assert web["is_text"].all() and web["prompt"].eq("").all()
    assert "日本語 🚀" in web["response"].iloc[0]
    dev = pool.dev_sets()["math"]
    assert dev.metric == "exact_match" and dev.n_docs == 1
    assert (out / "manifest.yaml").is_file()


def test_doc_ids_are_stable_and_duplicates_distinct(raw):
    first = Pool.open(build_pool(_manifest(raw, GOOD), raw / "one")).read("math")
    second = Pool.open(build_pool(_manifest(raw, GOOD), raw / "two")).read("math")
    assert first["doc_id"].tolist() == second["doc_id"].tolist()
    assert first["doc_id"].iloc[0] != first["doc_id"].iloc[2]  # same content, second occurrence


def test_open_manifest_builds_and_rebuilds_when_stale(raw):
    path = _manifest(raw, GOOD)
    assert Pool.open(path).n_docs() == 6
    changed = {**GOOD, "domains": GOOD["domains"][:1]}
    _manifest(raw, changed)
    assert Pool.open(path).domains == ["math"]


def _bad(data_fn):
    def make(raw):
        data = json.loads(json.dumps(GOOD))
        data_fn(data)
        return data
    return make


BAD_CASES = {
    "missing file": (_bad(lambda d: d["domains"][1]["sources"][0].update(path="raw/nope.parquet")),
                     ["'web'", "path", "file not found"]),
    "glob matches nothing": (_bad(lambda d: d["domains"][0]["sources"][0].update(path="raw/math/*.csv")),
                             ["'math'", "path", "glob matched no files"]),
    "empty domain": (_bad(lambda d: d["domains"][1].update(sources=[])), ["'web'", "sources", "empty"]),
    "missing column": (_bad(lambda d: d["domains"][0]["sources"][0]["columns"].update(response="answer")),
                       ["'math'", "columns", "answer"]),
    "duplicate domain": (_bad(lambda d: d["domains"][1].update(name="math")), ["'math'", "name", "twice"]),
    "unknown key in source": (_bad(lambda d: d["domains"][0]["sources"][0].update(weight=2)),
                              ["'math'", "weight", "unknown key"]),
    "unknown top-level key": (_bad(lambda d: d.update(owner="me")), ["owner", "unknown key"]),
    "bad metric": (_bad(lambda d: d["domains"][0]["dev"].update(metric="bleu")), ["'math'", "metric", "bleu"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_manifest_fails_cleanly(raw, case, capsys):
    make, expected = BAD_CASES[case]
    path = _manifest(raw, make(raw))
    out = raw / "out"
    code = launch.main(["pool", "build", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in expected:
        assert fragment in err, (fragment, err)
    assert not (out / "pool.json").exists()
    assert not (out / "shards").exists()


def test_source_with_no_rows_is_an_empty_domain(raw, capsys):
    (raw / "raw/empty.jsonl").write_text("", encoding="utf-8")
    data = {"name": "p", "domains": [{"name": "e", "sources": [{"path": "raw/empty.jsonl"}]}]}
    assert launch.main(["pool", "build", str(_manifest(raw, data))]) == 2
    assert "domain 'e'" in capsys.readouterr().err


def test_failed_rebuild_keeps_the_previous_pool(raw):
    out = build_pool(_manifest(raw, GOOD), raw / "built")
    before = Pool.open(out).read()["doc_id"].tolist()
    broken = json.loads(json.dumps(GOOD))
    broken["domains"][1]["sources"][0]["path"] = "raw/missing.parquet"
    with pytest.raises(Exception):
        build_pool(_manifest(raw, broken), out)
    assert Pool.open(out).read()["doc_id"].tolist() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".pool-build")]


def test_schema_errors_name_the_file_domain_field_and_value_all_at_once(tmp_path):
    from causalmix.core.errors import UserError
    from causalmix.datapool.manifest import parse_manifest

    data = {"name": "p", "shard_size": "10", "domains": [
        {"name": "math", "sources": [{"path": "a.jsonl", "columns": {"prompt": "q", "response": 3}}]},
        {"name": "web", "sources": [{"path": "b", "hf": "x"}], "dev": {"path": "d", "metric": "bleu"}}]}
    with pytest.raises(UserError) as exc:
        parse_manifest(data, tmp_path, origin="manifest m.yaml")
    lines = str(exc.value).splitlines()
    assert lines == [
        "manifest m.yaml: shard_size: input should be a valid integer (got '10')",  # strict: no coercion
        "manifest m.yaml: domain 'math': sources[0].columns.response: input should be a valid string (got 3)",
        "manifest m.yaml: domain 'web': sources[0]: give exactly one of 'path' or 'hf'",
        "manifest m.yaml: domain 'web': dev.metric: input should be 'nll' or 'exact_match' (got 'bleu')"]


def test_a_hub_source_may_be_named_by_a_string(tmp_path):
    from causalmix.datapool.manifest import parse_manifest

    manifest = parse_manifest({"name": "p", "domains": [{"name": "m", "sources": [{"hf": "openai/gsm8k"}]}]},
                              tmp_path)
    (source,) = manifest.domains[0].sources
    assert (source.hf.name, source.hf.split, source.columns) == ("openai/gsm8k", "train",
                                                                 {"prompt": "prompt", "response": "response"})
    assert manifest.shard_size == 2000 and manifest.harness == []


def test_build_streams_a_shard_at_a_time_with_the_ids_of_a_whole_file_read(tmp_path):
    """Sources are read a shard's worth at a time: Parquet row groups (3 rows) cut across the
    shards (4 rows), exact duplicates far apart still count as the next occurrence."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from causalmix.datapool.build import doc_id

    texts = [f"doc {i % 5}" for i in range(10)]  # each text twice, 5 rows apart
    (tmp_path / "raw").mkdir()
    pq.write_table(pa.table({"content": texts}), tmp_path / "raw/web.parquet", row_group_size=3)
    data = {"name": "toy", "shard_size": 4,
            "domains": [{"name": "web", "sources": [{"path": "raw/web.parquet", "columns": {"text": "content"}}]}]}
    pool = Pool.open(build_pool(_manifest(tmp_path, data), tmp_path / "built"))
    assert [s.n_docs for s in pool.shards("web")] == [4, 4, 2]
    web = pool.read("web")
    assert web["response"].tolist() == texts
    assert web["doc_id"].tolist() == [doc_id("web", "", t, True, i // 5) for i, t in enumerate(texts)]
