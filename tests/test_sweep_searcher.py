"""The sweep's Searcher: reproducible proposals, attempts counted (not successes), NaN
results tolerated, save/restore, adaptive draws in rounds (independent of finish order);
and the non-blocking round-snapshot reader."""
import math
import time

import numpy as np
import pytest
from ray.tune.search import Searcher

from causalmix.actors.sweep.searcher import ActorRoundSnapshots, MixtureSearcher
from causalmix.design.run_proposer import PENDING, LocalRoundSnapshots, recommended_mixture
from causalmix.mixture_space.dirichlet import DirichletMixtureSampler
from causalmix.mixture_space.state import DataStateSampler
from causalmix.mixture_space.trust_region import simplex_distance

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
    assert s.failed == {0, 1} and s.completed == {2: -1.5}


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


CENTRE = {"a": 0.6, "b": 0.3, "c": 0.1}


def fit_on(rows, round_index):
    """A stand-in fit: fails below 8 runs; else recommends a centre that depends on the rows'
    outcomes (so a snapshot fitted on other rows would give other mixtures)."""
    if len(rows) < 8:
        return None
    shift = 0.01 * (sum(r["y"] for r in rows) % 5)
    return {"version": round_index, "n_runs": len(rows),
            "policies": {"search": {"mixture": {"a": CENTRE["a"] - shift, "b": CENTRE["b"] + shift,
                                                "c": CENTRE["c"]}}}}


def drive(s, order_seed: int, slots: int) -> dict:
    """Play Tune: keep `slots` trials live, finish a random live one each step (y from run_id)."""
    rng = np.random.default_rng(order_seed)
    live, configs, k = {}, {}, 0
    while True:
        while len(live) < slots:
            c = s.suggest(f"t{k}")
            if c is None or c == Searcher.FINISHED:
                break
            live[f"t{k}"] = c
            configs[c["run_id"]] = c
            k += 1
        if not live:
            assert s.suggest("last") == Searcher.FINISHED
            return configs
        trial = list(live)[rng.integers(len(live))]
        c = live.pop(trial)
        y = float(c["index"] % 7)
        s.on_trial_complete(trial, result={"y": y, "run_row": {"run_id": c["run_id"], "y": y}})


def test_adaptive_rounds_give_the_same_runs_whatever_the_finish_order_and_concurrency():
    runs = {}
    for order_seed, slots in ((0, 1), (1, 2), (2, 5)):
        s = searcher(n_runs=40, adaptive_fraction=0.5, adaptive_radius=0.1, round_size=8,
                     snapshots=LocalRoundSnapshots(fit_on))
        runs[(order_seed, slots)] = drive(s, order_seed, slots)
    first, *others = runs.values()
    assert all(o == first for o in others)
    adaptive = [c for c in first.values() if c["sampler"] == "adaptive"]
    assert 6 <= len(adaptive) <= 26
    for c in adaptive:
        assert c["index"] >= 8 and c["extra"]["adaptive_round"] == c["index"] // 8
        assert c["extra"]["adaptive_fit_runs"] == 8 * c["extra"]["adaptive_round"]
        w = np.array([c["mixture"][d] for d in DOMAINS])
        assert simplex_distance(w, np.array(list(CENTRE.values())))[0] <= 0.1 + 0.06  # the centre moves by at most 0.04 in two weights
    plain = searcher(n_runs=40)
    plain_configs = {c["run_id"]: c["mixture"] for c in (plain.suggest(f"p{i}") for i in range(40))}
    assert all(c["mixture"] == plain_configs[c["run_id"]] for c in first.values() if c["sampler"] == "dirichlet")


def test_an_adaptive_run_waits_for_its_round_but_later_prior_runs_do_not():
    s = searcher(n_runs=24, adaptive_fraction=0.5, round_size=8, snapshots=LocalRoundSnapshots(fit_on))
    first = [s.suggest(f"t{i}") for i in range(8)]
    assert [c["index"] for c in first] == list(range(8))
    waiting = next(i for i in range(8, 24) if s.is_adaptive(i))
    nxt = s.suggest("t8")       # round 0 unfinished: the adaptive run is skipped, not waited for
    assert nxt["index"] != waiting and not s.is_adaptive(nxt["index"])
    for i in range(8):
        s.on_trial_complete(f"t{i}", result={"y": 1.0, "run_row": {"run_id": f"run-{i:05d}", "y": 1.0}})
    assert s.suggest("t9")["index"] == waiting
    assert s.round_snapshots[1]["n_runs"] == 8


def test_recommended_mixture_reads_policies_or_mixture():
    assert recommended_mixture(None, DOMAINS) is None
    assert recommended_mixture({"policies": {"analytic": {"mixture": {"a": 1, "b": 1, "c": 2}}}},
                               DOMAINS).tolist() == [0.25, 0.25, 0.5]
    assert recommended_mixture({"mixture": {"a": 1.0, "b": 0.0}}, DOMAINS) is None


@pytest.mark.ray
def test_round_snapshot_reader_never_waits_for_a_slow_fit_actor(ray_local):
    """The fit actor's answer is held back until the test releases it: a reader that waited
    would hang here (and pytest-timeout fails the test), one that does not answers PENDING."""
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

        async def round_snapshot(self, rows, round_index):
            await self.gate.wait.remote()
            return {"version": round_index, "n_runs": len(rows)}

    gate = Gate.remote()
    actor = SlowFit.options(name="slow-fit-test").remote(gate)
    reader = ActorRoundSnapshots("slow-fit-test")
    assert reader.poll(1) is PENDING                    # nothing requested
    reader.request(1, [{"run_id": "run-00000"}])
    assert [reader.poll(1) for _ in range(3)] == [PENDING] * 3  # the gate is closed: no answer yet
    ray.get(gate.open.remote())
    deadline = time.monotonic() + 60
    answer = PENDING
    while answer is PENDING:
        assert time.monotonic() < deadline, "the released answer never reached the reader"
        time.sleep(0.05)
        answer = reader.poll(1)
    assert answer == {"version": 1, "n_runs": 1}
    missing = ActorRoundSnapshots("no-such-actor")
    missing.request(2, [])
    assert missing.poll(2) is None                      # no fit actor: the prior, not a crash
    ray.kill(actor)
    ray.kill(gate)
