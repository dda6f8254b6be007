"""Pure logic of target training (no Ray): the memory plan, the per-rank data partition,
the long-CoT preset and chunked featurizing of long documents."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from causalmix import launch
from causalmix.core.errors import UserError
from causalmix.target.distributed import (TargetTrainConfig, micro_batches_per_rank, rank_micro_batches,
                                          should_checkpoint)
from causalmix.proxy.memory_plan import (GiB, ModelShape, PlanInputs, check_plan, detect_gpu_type,
                                         layer_activation_bytes_per_token, plan_memory, read_model_config)

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name, billions", [("Qwen/Qwen2.5-0.5B", 0.494), ("Qwen/Qwen2.5-7B", 7.616),
                                            ("Qwen/Qwen3-4B-Base", 4.022)])
def test_parameter_counts_of_bundled_configs(name, billions):
    # the published sizes: 0.49B, 7.61B, 4.02B
    assert ModelShape.from_config(read_model_config(name)).params / 1e9 == pytest.approx(billions, abs=2e-3)


def test_7b_refused_on_one_80gb_gpu_accepted_on_eight():
    shape = ModelShape.from_config(read_model_config("Qwen/Qwen2.5-7B"))
    one = plan_memory(PlanInputs(shape, seq_len=4096, micro_batch=1, workers=1, gpu_type="H100-80",
                                 activation_checkpointing=True))
    assert not one.fits and one.terms["AdamW state (fp32)"] == 8 * shape.params
    with pytest.raises(UserError, match=r"needs 1\d\d\.\d GiB per GPU.*--gpus-per-run 2"):
        check_plan(one)
    eight = plan_memory(PlanInputs(shape, seq_len=4096, micro_batch=1, workers=8, gpu_type="H100-80",
                                   activation_checkpointing=True))
    assert eight.fits and eight.terms["AdamW state (fp32)"] == one.terms["AdamW state (fp32)"] / 8
    check_plan(eight)


def test_checkpointing_and_micro_batch_are_suggested_when_they_fit():
    shape = ModelShape.from_config(read_model_config("Qwen/Qwen3-4B-Base"))
    plan = plan_memory(PlanInputs(shape, seq_len=16384, micro_batch=1, workers=8, gpu_type="H100-80"))
    assert not plan.fits
    with pytest.raises(UserError, match="turn on activation checkpointing") as err:
        check_plan(plan)
    assert "H200-141" in str(err.value)
    plan = plan_memory(PlanInputs(shape, seq_len=16384, micro_batch=3, workers=8, gpu_type="H100-80",
                                  activation_checkpointing=True))
    with pytest.raises(UserError, match="use micro-batch 1 "):
        check_plan(plan)


def test_activation_estimate_matches_what_autograd_saves():
    """The plan's per-layer activation bytes against the tensors autograd keeps for backward
    (parameters excluded, storages counted once) of a tiny Qwen2 in fp32 on CPU."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(hidden_size=128, intermediate_size=352, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=512)
    model = Qwen2ForCausalLM(config).train()
    shape = ModelShape.from_config(config.to_dict())
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ids = torch.randint(0, 512, (2, 128))

    def saved_bytes() -> int:
        seen = {}

        def pack(t):
            if t.untyped_storage().data_ptr() not in params:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.model(input_ids=ids)
        return sum(seen.values())

    tokens = ids.numel()
    full = saved_bytes()
    estimate = shape.num_layers * layer_activation_bytes_per_token(shape, 4) * tokens
    assert full == pytest.approx(estimate, rel=0.15)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    kept = saved_bytes()
    plan = plan_memory(PlanInputs(shape, seq_len=128, micro_batch=2, compute_bytes=4,
                                  activation_checkpointing=True))
    assert shape.num_layers * 4 * shape.hidden_size * tokens <= kept <= plan.terms["activations (checkpointed)"]
    assert kept < full / 5


def test_gpu_type_from_ray_resources():
    assert detect_gpu_type({"GPU": 8, "accelerator_type:H100": 1}) == "H100-80"
    assert detect_gpu_type({"GPU": 8, "accelerator_type:A100": 1}) is None  # 40 or 80 GB
    assert detect_gpu_type({"CPU": 2}) is None


@pytest.mark.parametrize("rows, world, mb", [(7, 2, 1), (6, 3, 2), (4, 1, 2), (5, 4, 1), (1, 2, 2)])
def test_ranks_share_every_row_once_with_equal_micro_batch_counts(rows, world, mb):
    step = list(range(100, 100 + rows))
    per_rank = [rank_micro_batches(step, r, world, mb) for r in range(world)]
    assert {len(m) for m in per_rank} == {micro_batches_per_rank(rows, mb, world)}
    flat = [row for m in per_rank for batch in m for row in batch]
    assert sorted(flat) == step
    assert all(len(batch) <= mb for m in per_rank for batch in m)
    if world == 1:  # one rank runs the single-device micro-batches, in order
        assert per_rank[0] == [step[i:i + mb] for i in range(0, rows, mb)]


def test_checkpoint_steps_and_config_checks():
    assert [s for s in range(1, 8) if should_checkpoint(s, 7, 3)] == [3, 6, 7]
    assert TargetTrainConfig(workers=8).distributed and not TargetTrainConfig().distributed
    with pytest.raises(ValueError, match="gpu_type"):
        TargetTrainConfig(gpu_type="H100")


def test_dry_run_prints_the_plan_and_refuses(capsys):
    assert launch.main(["validate", "--dry-run", "--target-model", "Qwen/Qwen2.5-7B",
                        "--gpu-type", "H100-80", "--gpus-per-run", "8", "--activation-checkpointing"]) == 0
    out = capsys.readouterr().out
    assert "8 GPU(s) (FSDP)" in out and json.loads(out.strip().splitlines()[-1])["fits"]
    assert launch.main(["validate", "--dry-run", "--target-model", "Qwen/Qwen2.5-7B",
                        "--gpu-type", "H100-80"]) == 2
    assert "--gpus-per-run" in capsys.readouterr().err
    assert launch.main(["validate", "--dry-run", "--target-model", "Qwen/Qwen2.5-7B",
                        "--gpu-type", "H100"]) == 2
    assert "gpu_type 'H100'" in capsys.readouterr().err


def test_longcot_preset(capsys):
    from causalmix.actors.featurize.driver import FeaturizeConfig
    from causalmix.core.config import load_config

    preset = REPO / "configs" / "longcot.yaml"
    assert launch.main(["validate", "--config", str(preset), "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plan["seq_len"] >= 16384 and plan["activation_checkpointing"] and plan["fits"]
    assert plan["params"] == ModelShape.from_config(read_model_config("Qwen/Qwen3-4B-Base")).params
    feat = load_config(FeaturizeConfig, preset, {"pool": "p", "out": "o"}, section="featurize")
    assert feat.model == "Qwen/Qwen3-4B-Base" and feat.batch_tokens < plan["seq_len"]


def test_a_command_reads_its_section_and_names_it_in_errors(tmp_path):
    import yaml

    from causalmix.actors.validate.driver import ValidateConfig
    from causalmix.core.config import load_config

    data = yaml.safe_load((REPO / "configs" / "longcot.yaml").read_text())
    data["validate"]["epochz"] = 1
    bad = tmp_path / "longcot.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=r"longcot.yaml \(validate\): unknown key\(s\) \['epochz'\]"):
        load_config(ValidateConfig, bad, {}, section="validate")


def test_long_documents_featurized_in_chunks_match_one_pass(tiny_env):
    """A document longer than batch_tokens runs in KV-cached chunks; its features equal
    those of scoring it in one pass (float rounding of differently shaped products)."""
    from causalmix.features.doc_features import ScoredDoc, score_documents
    from causalmix.lm.loading import load_causal_lm

    model = load_causal_lm(str(tiny_env.proxy_model), device="cpu")
    rng = np.random.default_rng(0)
    docs = [ScoredDoc(rng.integers(3, 500, size=n).tolist(), start)
            for n, start in ((90, 10), (500, 1), (40, 39), (61, 5))]
    whole = score_documents(model, docs, batch_tokens=8192)
    chunked = score_documents(model, docs, batch_tokens=16)  # every document takes >= 3 chunks
    np.testing.assert_array_equal(chunked.n_tokens, whole.n_tokens)
    np.testing.assert_allclose(chunked.normalized_loss, whole.normalized_loss, rtol=1e-5)
    np.testing.assert_allclose(chunked.hes, whole.hes, rtol=1e-5)
    assert whole.hes[1] > whole.hes[0]  # 499 scored tokens sum 3 entropies, 80 sum 1
