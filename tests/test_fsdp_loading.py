"""target/fsdp_train.py load_sharded in a 2-process gloo group (no Ray): rank 0 alone loads the
weights, the others build on the meta device, and after the broadcast the sharded model holds
exactly the pretrained weights and buffers on every rank."""
from __future__ import annotations

import os
import socket

import pytest

pytestmark = pytest.mark.slow


def _rank(rank: int, world: int, port: int, model_dir: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    import causalmix.proxy.run
    from causalmix import proxy
    from causalmix.proxy.config import ProxyConfig
    from causalmix.target.distributed import TargetTrainConfig
    from causalmix.target.fsdp_train import full_state_dict, load_sharded

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    loads = []
    original = proxy.run.load_for_training

    def counting(*args, **kwargs):
        loads.append(1)
        return original(*args, **kwargs)

    proxy.run.load_for_training = counting
    cfg = ProxyConfig(model=model_dir, device="cpu", dtype="float32", threads=1)
    model = load_sharded(cfg, TargetTrainConfig(workers=world), "cpu", rank, world)
    weights = full_state_dict(model)
    torch.save({"loads": len(loads), "weights": weights,
                "buffers": {n: b.clone() for n, b in model.named_buffers()}},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_rank0_loads_and_broadcasts_into_the_shards(tiny_env, tmp_path):
    import torch
    import torch.multiprocessing as mp

    from causalmix.proxy.config import ProxyConfig
    from causalmix.proxy.run import load_for_training

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(2, port, str(tiny_env.target_model), str(tmp_path)), nprocs=2, join=True)
    reference = load_for_training(ProxyConfig(model=str(tiny_env.target_model), device="cpu",
                                              dtype="float32"), "cpu")
    expected = reference.state_dict()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert [r["loads"] for r in ranks] == [1, 0]  # only rank 0 read the weights
    gathered = ranks[0]["weights"]
    assert set(gathered) == set(expected)
    for name, value in expected.items():
        assert torch.equal(gathered[name], value), name
    buffers = dict(reference.named_buffers())
    assert buffers  # the rotary tables: what to_empty leaves uninitialised
    for r in ranks:
        assert set(r["buffers"]) == set(buffers)
        for name, value in buffers.items():
            assert torch.equal(r["buffers"][name], value), name
