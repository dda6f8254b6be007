"""Tiny Qwen2-architecture models built offline: the miniature of Qwen2.5-0.5B (proxy)
and of the larger target model.

A byte-level BPE tokenizer is trained on the demo corpus with `tokenizers`, a
`Qwen2ForCausalLM` is built from `Qwen2Config`, briefly pretrained on plain text
so that its losses and entropies mean something (a random model scores every
document alike), and saved with `save_pretrained`. Everything downstream loads
it with `from_pretrained(path)`, the call that loads Qwen/Qwen2.5-0.5B on a cluster.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tqdm.auto import tqdm

from causalmix.core.atomic import atomic_directory, atomic_write_json
from causalmix.core.provenance import provenance

# Deferred on purpose, so that importing this module does not load torch, transformers and
# tokenizers: the function-local imports (of these libraries or of this project's modules that
# import them).

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape and pretraining budget of one tiny model."""

    hidden_size: int = 64
    """Width; at most 128 keeps CPU runs fast."""
    num_layers: int = 2
    """Decoder layers."""
    num_heads: int = 4
    """Query heads."""
    num_kv_heads: int = 2
    """Key/value heads (grouped-query attention, as in Qwen2.5)."""
    intermediate_size: int = 176
    """MLP width."""
    max_position_embeddings: int = 512
    """Context length; longer documents are truncated by the featurizer and SFT."""
    pretrain_steps: int = 150
    """Plain-text LM steps that give the model a non-trivial loss landscape."""
    pretrain_batch: int = 16
    """Sequences per pretraining step."""
    pretrain_seq_len: int = 128
    """Tokens per pretraining sequence."""
    learning_rate: float = 3e-3
    """Peak AdamW learning rate of pretraining (cosine decay)."""

    def __post_init__(self):
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must divide by num_heads, num_heads by num_kv_heads")
        if self.pretrain_steps < 0:
            raise ValueError(f"pretrain_steps must be >= 0, got {self.pretrain_steps}")


PROXY_SPEC = TinyModelSpec()
TARGET_SPEC = TinyModelSpec(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2,
                            intermediate_size=352, pretrain_steps=200)


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, *, vocab_size: int = 2048):
    """Train a byte-level BPE tokenizer with ChatML special tokens; returns the HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>", model_max_length=1 << 20)
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def build_model(tokenizer, spec: TinyModelSpec, *, seed: int):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, rope_theta=10000.0,
    )
    return Qwen2ForCausalLM(config)


def pretrain(model, tokenizer, texts: list[str], spec: TinyModelSpec, *, seed: int,
             desc: str = "pretrain") -> list[float]:
    """Plain next-token training on a token stream cut into fixed blocks; returns losses."""
    import torch

    # Tokenise only what the step budget can use (twice over, so sampling still varies).
    wanted = 2 * max(1, spec.pretrain_steps) * spec.pretrain_batch * spec.pretrain_seq_len
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        stream.append(tokenizer.eos_token_id)
        if len(stream) >= wanted:
            break
    n_blocks = len(stream) // spec.pretrain_seq_len
    if n_blocks < spec.pretrain_batch:
        raise ValueError(f"pretraining corpus too small: {n_blocks} blocks of "
                         f"{spec.pretrain_seq_len} tokens for batch {spec.pretrain_batch}")
    blocks = torch.tensor(stream[: n_blocks * spec.pretrain_seq_len]).view(n_blocks, -1)
    gen = torch.Generator().manual_seed(seed)
    optim = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01)
    warmup = max(1, spec.pretrain_steps // 10)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, spec.pretrain_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_at)
    model.train()
    losses = []
    for _ in tqdm(range(spec.pretrain_steps), desc=desc, unit="step", leave=False):
        idx = torch.randint(0, n_blocks, (spec.pretrain_batch,), generator=gen)
        batch = blocks[idx]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def build_tiny_model(out_dir: str | Path, tokenizer_dir: str | Path, corpus: list[str],
                     spec: TinyModelSpec, *, seed: int, name: str) -> Path:
    """Build, pretrain and save one tiny model (with its tokenizer) atomically into `out_dir`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model = build_model(tokenizer, spec, seed=seed)
    losses = pretrain(model, tokenizer, corpus, spec, seed=seed, desc=f"pretrain {name}")
    with atomic_directory(out_dir, kind="tiny model", markers=("causalmix_model.json",)) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        n_params = sum(p.numel() for p in model.parameters())
        atomic_write_json(tmp / "causalmix_model.json", provenance(
            spec, name=name, seed=seed, n_parameters=n_params,
            pretrain_loss_first=losses[0] if losses else None,
            pretrain_loss_last=losses[-1] if losses else None))
    return Path(out_dir)


def build_model_family(models_dir: str | Path, tokenizer_texts: list[str], corpus: list[str], *,
                       vocab_size: int, seed: int, proxy_spec: TinyModelSpec = PROXY_SPEC,
                       target_spec: TinyModelSpec = TARGET_SPEC) -> dict[str, Path]:
    """Tokenizer + proxy + target under `models_dir` (the miniature of Qwen2.5-0.5B -> 7B)."""
    models_dir = Path(models_dir)
    tokenizer_dir = models_dir / "tokenizer"
    train_tokenizer(tokenizer_texts, tokenizer_dir, vocab_size=vocab_size)
    return {
        "proxy": build_tiny_model(models_dir / "proxy", tokenizer_dir, corpus, proxy_spec,
                                  seed=seed, name="proxy"),
        "target": build_tiny_model(models_dir / "target", tokenizer_dir, corpus, target_spec,
                                   seed=seed + 1, name="target"),
    }
