"""`export`: a mixture drawn to a token budget, written as Parquet + a `datasets` folder."""
import json
import random

import numpy as np
import pandas as pd
import pytest
import yaml

from causalmix import launch
from causalmix.core.errors import UserError
from causalmix.datapool.build import build_pool
from causalmix.datapool.export import (ExportConfig, count_tokens, domain_token_counts, draw_domain,
                             parse_tokens, plan_export, read_mixture, write_export)
from causalmix.datapool.pool import Pool

DOMAINS = {"code": 60, "math": 40, "chat": 25}  # documents per domain


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    """Three domains of prompt/response documents of varied length (about 0.2 s to build)."""
    root = tmp_path_factory.mktemp("export_pool")
    manifest = {"name": "exp", "shard_size": 20, "domains": []}
    for domain, n in DOMAINS.items():
        rng = random.Random(domain)
        src = root / "sources" / f"{domain}.jsonl"
        src.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "w") as fh:
            for i in range(n):
                words = " ".join(f"{domain}{rng.randint(0, 999)}" for _ in range(rng.randint(3, 40)))
                fh.write(json.dumps({"prompt": f"Q{i}: {domain}?", "response": words}) + "\n")
        manifest["domains"].append({"name": domain, "sources": [
            {"path": f"sources/{domain}.jsonl", "columns": {"prompt": "prompt", "response": "response"}}]})
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    return build_pool(root / "manifest.yaml")


def _mixture(tmp_path, obj, name="mix.json"):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return str(path)


def test_domain_token_counts_match_per_document_fallback(pool_dir):
    pool = Pool.open(pool_dir)
    counts = domain_token_counts(pool)
    frame = pool.read("math")
    texts = (frame["prompt"] + frame["response"]).tolist()
    assert counts["math"] == sum(-(-len(t) // 4) for t in texts)
    assert set(counts) == set(DOMAINS) and all(v > 0 for v in counts.values())


def test_draw_lands_within_one_document_and_repeats_only_whole_epochs():
    tokens = np.array([5, 17, 3, 40, 11, 8])
    for target in (1, 30, 84, 200, 333.5):
        draw = draw_domain(tokens, target, np.random.default_rng(0))
        assert abs(draw.tokens - target) <= tokens.max()
        # each epoch is one permutation: no document repeats within an epoch
        for e in np.unique(draw.epoch):
            idx = draw.index[draw.epoch == e]
            assert len(idx) == len(set(idx.tolist()))


def test_export_counts_within_one_document_and_loads_with_datasets(pool_dir, tmp_path):
    import datasets

    pool = Pool.open(pool_dir)
    total = sum(domain_token_counts(pool).values())
    mix = {"code": 0.5, "math": 0.3, "chat": 0.2}
    budget = int(total * 1.5)  # chat needs > 1 epoch: repetition is exercised
    out = tmp_path / "out"
    record = write_export(ExportConfig(pool=str(pool_dir), mixture=_mixture(tmp_path, mix),
                                       tokens=budget, out=str(out), seed=3, shard_rows=70))
    for d, w in mix.items():
        c = record["domains"][d]
        assert abs(c["tokens"] - w * budget) <= c["max_doc_tokens"], d
        assert c["epochs"] <= record["max_epochs"]
    assert record["domains"]["chat"]["epochs"] > 1
    assert record["token_counter"]["kind"] == "chars/4"
    assert "versions" in record["provenance"] and record["provenance"]["config"]["seed"] == 3
    assert json.loads((out / "counts.json").read_text())["domains"] == record["domains"]

    ds = datasets.load_from_disk(str(out / "hf"))
    per_domain = pd.Series(ds["domain"]).value_counts().to_dict()
    assert per_domain == {d: record["domains"][d]["documents"] for d in mix}
    shards = sorted((out / "data").glob("train-*.parquet"))
    assert len(shards) == len(record["files"]["parquet"]) > 1
    parquet = pd.concat([pd.read_parquet(s) for s in shards], ignore_index=True)
    assert parquet["doc_id"].tolist() == ds["doc_id"]
    assert parquet.groupby("domain")["n_tokens"].sum().to_dict() == {
        d: record["domains"][d]["tokens"] for d in mix}
    # shuffled across domains: the first rows are not one domain's block
    assert parquet["domain"].iloc[:30].nunique() > 1
    probs = record["sampling_probabilities"]
    assert abs(sum(probs.values()) - 1) < 1e-9


def test_same_seed_same_rows_other_seed_other_rows(pool_dir, tmp_path):
    pool = Pool.open(pool_dir)
    mix = {"code": 0.4, "math": 0.4, "chat": 0.2}
    a, ca = plan_export(pool, mix, 3000, seed=7)
    b, cb = plan_export(pool, mix, 3000, seed=7)
    c, _ = plan_export(pool, mix, 3000, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert ca == cb
    assert a["doc_id"].tolist() != c["doc_id"].tolist()
    mix_file = _mixture(tmp_path, mix)
    for name in ("x", "y"):
        write_export(ExportConfig(pool=str(pool_dir), mixture=mix_file, tokens=3000, seed=7,
                                  out=str(tmp_path / name)))
    shard = "data/train-00000-of-00001.parquet"
    assert (tmp_path / "x" / shard).read_bytes() == (tmp_path / "y" / shard).read_bytes()


def test_epoch_cap_refusal_names_domain_and_numbers(pool_dir, tmp_path):
    pool = Pool.open(pool_dir)
    chat = domain_token_counts(pool)["chat"]
    with pytest.raises(UserError, match=r"chat: weight 0.5 .* epochs of its %d tokens.*"
                                        r"lower --tokens to at most" % chat):
        plan_export(pool, {"code": 0.5, "chat": 0.5}, chat * 10, max_epochs=2)
    out = tmp_path / "refused"
    code = launch.main(["export", "--pool", str(pool_dir), "--mixture",
                        _mixture(tmp_path, {"code": 0.5, "chat": 0.5}), "--tokens", str(chat * 10),
                        "--max-epochs", "2", "--out", str(out)])
    assert code == 2 and not out.exists()


def test_cli_accepts_recommend_output_and_prints_probabilities(pool_dir, tmp_path, capsys):
    rec = {"mixture": {"code": 0.25, "math": 0.25, "chat": 0.5}, "expected_gain": 0.1}
    out = tmp_path / "cli"
    code = launch.main(["export", "--pool", str(pool_dir), "--mixture", _mixture(tmp_path, rec),
                        "--tokens", "2K", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "interleave_datasets" in printed
    last = json.loads(printed.strip().splitlines()[-1])
    assert set(last["sampling_probabilities"]) == {"code", "math", "chat"}
    # rerun over an earlier export replaces it; a foreign directory is refused
    assert launch.main(["export", "--pool", str(pool_dir), "--mixture", _mixture(tmp_path, rec),
                        "--tokens", "2K", "--out", str(out)]) == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert launch.main(["export", "--pool", str(pool_dir), "--mixture", _mixture(tmp_path, rec),
                        "--tokens", "2K", "--out", str(foreign)]) == 2
    assert (foreign / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("obj, message", [
    ({"code": 0.5, "math": 0.2}, "sum to 0.7"),
    ({"code": -0.5, "math": 1.5}, "finite numbers >= 0"),
    ({"code": "half", "math": 0.5}, "finite numbers >= 0"),
    ([0.5, 0.5], "expected"),
])
def test_bad_mixture_files(tmp_path, obj, message):
    with pytest.raises(UserError, match=message):
        read_mixture(_mixture(tmp_path, obj))


class _NoTokens:
    """A tokenizer that finds no tokens in chat documents (an empty domain, in effect)."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[] if "chat" in t else [1] for t in texts]}


def test_unknown_domain_and_bad_budget(pool_dir):
    with pytest.raises(UserError, match=r"domains \['web'\] are not in pool 'exp'"):
        plan_export(Pool.open(pool_dir), {"web": 0.5, "code": 0.5}, 1000)
    with pytest.raises(UserError, match=r"domains \['chat'\], which have no tokens"):
        plan_export(Pool.open(pool_dir), {"chat": 0.5, "code": 0.5}, 1000, tokenizer=_NoTokens())
    assert parse_tokens("2.5M") == 2_500_000 and parse_tokens("1e3") == 1000
    for bad in ("0", "-3", "lots", "1.5"):
        with pytest.raises(UserError, match="--tokens"):
            parse_tokens(bad)


def test_tokenizer_counts_tokens(pool_dir, tmp_path):
    """With --tokenizer the counts are the tokenizer's (a word-level tokenizer built here)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")
    pool = Pool.open(pool_dir)
    counts = domain_token_counts(pool, str(tmp_path / "tok"))
    frame = pool.read("code")
    texts = (frame["prompt"] + frame["response"]).tolist()
    expected = sum(len(pre_tokenizers.Whitespace().pre_tokenize_str(t)) for t in texts)
    assert counts["code"] == expected != domain_token_counts(pool)["code"]
    record = write_export(ExportConfig(pool=str(pool_dir), mixture=_mixture(tmp_path, {"code": 1.0}),
                                       tokens=expected // 2, out=str(tmp_path / "tok-out"),
                                       tokenizer=str(tmp_path / "tok")))
    assert record["token_counter"]["kind"] == "tokenizer"
    code = record["domains"]["code"]
    assert abs(code["tokens"] - expected // 2) <= code["max_doc_tokens"]
    assert count_tokens(["a b c"], None).tolist() == [2]
    with pytest.raises(UserError, match="--tokenizer"):
        domain_token_counts(pool, str(tmp_path / "nope"))


def test_a_recommendation_under_a_tight_budget_exports_within_every_cap(pool_dir, tmp_path, capsys):
    """recommend --domain-tokens POOL caps each domain at max_epochs x its tokens / budget, and
    export then draws that mixture without exceeding the cap."""
    from causalmix.causal.estimators import RegressionEstimator
    from causalmix.causal.model_dir import FittedMixtureModel, save_model_dir
    from causalmix.causal.runs_table import validate_runs_frame

    rng = np.random.default_rng(0)
    domains = list(DOMAINS)
    W = rng.dirichlet(np.ones(3), 60)
    frame = pd.DataFrame({"run_id": [f"r{i}" for i in range(60)],
                          **{f"mix.{d}": W[:, j] for j, d in enumerate(domains)},
                          "y": np.log(W[:, 0] + 0.01) * 2 + 0.01 * rng.normal(size=60)})  # code is best
    table = validate_runs_frame(frame)
    estimator = RegressionEstimator(treatment_featurizer="log-only", featurizer_eps=0.01).fit(
        table.mixtures(), table.covariates(), table.y)
    save_model_dir(FittedMixtureModel.from_runs_table(estimator, "regression", table), tmp_path / "m",
                   runs_table_sha256=None, config={})
    (tmp_path / "cov.json").write_text("{}")
    tokens = domain_token_counts(Pool.open(pool_dir))
    budget = sum(tokens.values())
    capsys.readouterr()
    assert launch.main(["recommend", "--model", str(tmp_path / "m"), "--covariates", str(tmp_path / "cov.json"),
                        "--domain-tokens", str(pool_dir), "--target-tokens", str(budget),
                        "--max-epochs", "1"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for d in domains:
        assert rec["mixture"][d] <= tokens[d] / budget + 1e-9
    assert rec["constraints"]["binding"].get("code") == "upper"
    (tmp_path / "rec.json").write_text(json.dumps(rec))
    assert launch.main(["export", "--pool", str(pool_dir), "--mixture", str(tmp_path / "rec.json"),
                        "--tokens", str(int(budget * 0.95)), "--max-epochs", "1",
                        "--out", str(tmp_path / "export")]) == 0
    counts = json.loads((tmp_path / "export" / "counts.json").read_text())
    assert all(entry["epochs"] <= 1.0 + 1e-9 for entry in counts["domains"].values())


def test_trl_sft_trainer_takes_the_export_as_it_is(tiny_env, tmp_path):
    """The default --format trl is a standard prompt-completion dataset: TRL's SFTTrainer reads
    `hf/` with no formatting function and trains a step on it (tiny model, CPU)."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer
    from trl.data_utils import is_conversational

    out = tmp_path / "export"
    mixture = _mixture(tmp_path, {"arithmetic": 0.5, "code": 0.5})
    write_export(ExportConfig(pool=str(tiny_env.pool_small), mixture=mixture, tokens=2000, out=str(out)))
    ds = datasets.load_from_disk(str(out / "hf"))
    assert {"prompt", "completion"} <= set(ds.column_names) and "response" not in ds.column_names
    assert not is_conversational(ds[0])
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_env.proxy_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_env.proxy_model), dtype=torch.float32)
    args = SFTConfig(output_dir=str(tmp_path / "trl"), max_steps=1, per_device_train_batch_size=2, max_length=64,
                     report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)
    # read as prompt-completion: the prompt tokens are masked out of the labels
    assert any(-100 in labels for labels in trainer.train_dataset["labels"])
    assert np.isfinite(trainer.train().training_loss)


def test_trl_columns_of_text_documents():
    from causalmix.datapool.export import trl_columns

    rows = pd.DataFrame({"doc_id": ["a", "b"], "prompt": ["", "Q"], "response": ["text", "A"],
                         "is_text": [True, False], "domain": "d"})
    assert list(trl_columns(rows).columns) == ["prompt", "completion", "doc_id", "domain"]
    text = trl_columns(rows.iloc[:1])
    assert list(text.columns) == ["text", "doc_id", "domain"] and text["text"].tolist() == ["text"]


def test_export_streams_a_pool_shard_at_a_time(pool_dir, tmp_path, monkeypatch):
    """`export` never holds a domain: each pool shard is read twice (tokens, then its drawn rows)
    and the files are those of the same rows written from memory."""
    from collections import Counter

    import causalmix.datapool.export as export
    import causalmix.datapool.export_stream as export_stream
    from causalmix.datapool.export import document_texts, write_training_set

    reads, read_shard = Counter(), export.read_shard

    def counted(path):
        reads[path] += 1
        return read_shard(path)

    monkeypatch.setattr(export, "read_shard", counted)
    monkeypatch.setattr(export_stream, "read_shard", counted)
    monkeypatch.setattr(Pool, "read", lambda *a: pytest.fail("a whole domain read"))
    pool = Pool.open(pool_dir)
    budget = int(sum(domain_token_counts(pool).values()) * 1.5)
    mix = _mixture(tmp_path, {"code": 0.5, "math": 0.3, "chat": 0.2})
    reads.clear()
    record = write_export(ExportConfig(pool=str(pool_dir), mixture=mix, tokens=budget,
                                       out=str(tmp_path / "out"), seed=3, shard_rows=70))
    assert set(reads.values()) == {2} and len(reads) == len(pool.shards())
    rows, _ = plan_export(pool, read_mixture(mix), budget, seed=3)
    assert (count_tokens(document_texts(rows)) == rows["n_tokens"]).all()  # each row has its document
    memory = write_training_set(tmp_path / "memory", rows, {}, 70)
    assert record["files"] == memory["files"] and record["columns"] == memory["columns"]
    for name in record["files"]["parquet"]:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / name),
                                      pd.read_parquet(tmp_path / "memory" / name))
