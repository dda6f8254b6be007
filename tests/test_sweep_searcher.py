"""The sweep's Searcher: reproducible proposals, attempts counted (not successes), NaN
results tolerated, save/restore, adaptive draws; and the non-blocking snapshot reader."""
import math
import time

import numpy as np
import pytest
from ray.tune.search import Searcher

from actors.sweep_searcher import ActorSnapshots, MixtureSearcher, recommended_mixture
from mixture_space.dirichlet import DirichletMixtureSampler
from mixture_space.state import DataStateSampler
from mixture_space.trust_region import simplex_distance

DOMAINS = ["a", "b", "c"]
SHARDS = {d: [f"{d}/shard-{i}" for i in range(4)] for d in DOMAINS}


def searcher(n_runs=6, seed=0, **kw):
    return MixtureSearcher(domains=DOMAINS,
                           mixture_sampler=DirichletMixtureSampler.from_token_counts(
                               {"a": 10, "b": 30, "c": 60}, seed=seed),
                           state_sampler=DataStateSampler(SHARDS), n_runs=n_runs, seed=seed, **kw)


def test_proposals_are_reproducible_and_valid():
    one, two = searcher(), searcher()
    configs = [one.suggest(f"t{i}") for i in range(6)]
    assert configs == [two.suggest(f"other{i}") for i in range(6)]
    assert [c["run_id"] for c in configs] == [f"run-{i:05d}" for i in range(6)]
    for c in configs:
        w = np.array([c["mixture"][d] for d in DOMAINS])
        assert np.all(w >= 0) and w.sum() == pytest.approx(1.0)
        assert set(c["state"]) == set(DOMAINS) and c["sampler"] == "dirichlet"
    assert len({tuple(c["mixture"].values()) for c in configs}) == 6
    assert searcher(seed=1).suggest("t")["mixture"] != configs[0]["mixture"]


def test_attempts_not_successes_are_counted_and_nan_is_tolerated():
    s = searcher(n_runs=3)
    for i in range(3):
        assert s.suggest(f"t{i}") is not None
    s.on_trial_complete("t0", result={"y": float("nan")})
    s.on_trial_complete("t1", error=True)
    s.on_trial_complete("t2", result={"y": -1.5})
    s.on_trial_complete("unknown", result={"y": 3.0})
    assert s.suggest("t3") == Searcher.FINISHED  # errors do not buy extra runs
    assert s.failed == {0, 1} and s.best == (2, -1.5)


def test_save_and_restore_continue_the_same_sequence(tmp_path):
    s = searcher()
    first = [s.suggest(f"t{i}") for i in range(2)]
    s.on_trial_complete("t0", result={"y": 1.0})
    s.save(str(tmp_path / "state.pkl"))
    rest = [s.suggest(f"t{i}") for i in range(2, 6)]
    restored = searcher()
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.attempts == 2 and restored.completed == {0: 1.0}
    assert [restored.suggest(f"u{i}") for i in range(4)] == rest
    assert restored.suggest("u9") == Searcher.FINISHED
    with pytest.raises(ValueError, match="n_runs"):
        searcher(n_runs=7).restore(str(tmp_path / "state.pkl"))
    assert first[0]["run_id"] == "run-00000"


def test_adaptive_runs_are_drawn_around_the_latest_recommendation():
    centre = {"a": 0.6, "b": 0.3, "c": 0.1}
    snapshot = {"version": 3, "policies": {"search": {"mixture": centre}}}
    calls = []

    def source():
        calls.append(1)
        return snapshot if len(calls) > 2 else None  # nothing has arrived for the first two runs

    s = searcher(n_runs=40, adaptive_fraction=0.5, adaptive_radius=0.1, snapshot_source=source)
    configs = [s.suggest(f"t{i}") for i in range(40)]
    adaptive = [c for c in configs if c["sampler"] == "adaptive"]
    assert 8 <= len(adaptive) <= 30
    for c in adaptive:
        w = np.array([c["mixture"][d] for d in DOMAINS])
        assert simplex_distance(w, np.array(list(centre.values())))[0] <= 0.1 + 1e-9
        assert c["extra"]["adaptive_snapshot"] == 3
    prior_runs = [c for c in configs if c["sampler"] == "dirichlet"]
    plain = searcher(n_runs=40)
    plain_configs = {c["run_id"]: c["mixture"] for c in (plain.suggest(f"p{i}") for i in range(40))}
    assert all(c["mixture"] == plain_configs[c["run_id"]] for c in prior_runs)


def test_recommended_mixture_reads_policies_or_mixture():
    assert recommended_mixture(None, DOMAINS) is None
    assert recommended_mixture({"policies": {"analytic": {"mixture": {"a": 1, "b": 1, "c": 2}}}},
                               DOMAINS).tolist() == [0.25, 0.25, 0.5]
    assert recommended_mixture({"mixture": {"a": 1.0, "b": 0.0}}, DOMAINS) is None


@pytest.mark.ray
def test_snapshot_reader_never_waits_for_a_slow_fit_actor(ray_local):
    """The fit actor's answer is held back until the test releases it: a reader that waited
    would hang here (and pytest-timeout fails the test), one that does not returns None."""
    import ray

    @ray.remote(num_cpus=0)
    class Gate:
        def __init__(self):
            import asyncio

            self.opened = asyncio.Event()

        async def wait(self):
            await self.opened.wait()

        def open(self):
            self.opened.set()

    @ray.remote(num_cpus=0)
    class SlowFit:
        def __init__(self, gate):
            self.gate = gate

        async def latest_snapshot(self):
            await self.gate.wait.remote()
            return {"version": 1, "mixture": {"a": 0.2, "b": 0.3, "c": 0.5}}

    gate = Gate.remote()
    actor = SlowFit.options(name="slow-fit-test").remote(gate)
    reader = ActorSnapshots("slow-fit-test")
    assert [reader() for _ in range(3)] == [None, None, None]  # the gate is closed: no answer yet
    ray.get(gate.open.remote())
    deadline = time.monotonic() + 60
    while reader() is None:
        assert time.monotonic() < deadline, "the released answer never reached the reader"
        time.sleep(0.05)
    assert reader()["version"] == 1
    assert ActorSnapshots("no-such-actor")() is None
    ray.kill(actor)
    ray.kill(gate)
