"""The scaling figure of bench_paper_scale.py: wall time, CPU seconds (every process of the
run: on a shared machine they show the growth that a swinging load hides in wall time), the
sweep's CPU seconds per run by process (flat where the sweep is linear in its runs) and peak
memory of every stage against the scale, from the `--json` files of runs at several `--scale`s, on log-log axes with a
slope-1 guide through each stage's smallest point (a stage steeper than its guide grows faster
than linearly in its work). A stage missing from some runs is drawn where it was measured.

    python benchmarks/paper_scale_figure.py s8.json s4.json s2.json s1.json --out docs/figures/paper_scale.svg
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STAGES = ("pool", "featurize", "sweep", "fit", "serve")


def series(runs: list[dict], stage: str, value) -> tuple[list[float], list[float]]:
    points = sorted((r["scale"], value(r[stage])) for r in runs if stage in r)
    return [p[0] for p in points], [p[1] for p in points]


def stage_label(runs: list[dict], stage: str) -> str:
    """The featurize stage says whether the model featurized or synthetic features were written."""
    modes = sorted({r[stage].get("mode", "") for r in runs if stage in r} - {""})
    return f"{stage} ({', '.join(modes)})" if stage == "featurize" and modes else stage


def draw(runs: list[dict], out: Path) -> None:
    from causalmix.core.figure import subplots

    fig, (time_ax, cpu_ax, run_ax, mem_ax) = subplots(1, 4, figsize=(20, 4.4))
    for stage in STAGES:
        # the fit stage also times a one-thread fit; its curve is the default fit's own seconds
        scales, walls = series(runs, stage, lambda s: s["fit_s"] if stage == "fit" else s["wall_s"])
        if not scales:
            continue
        line, = time_ax.plot(scales, walls, "o-", label=stage_label(runs, stage))
        time_ax.plot(scales, [walls[0] * x / scales[0] for x in scales], ":", color=line.get_color())
        scales, cpu = series(runs, stage, lambda s: s.get("cpu_s", float("nan")))
        cpu_ax.plot(scales, cpu, "o-", color=line.get_color(), label=stage_label(runs, stage))
        cpu_ax.plot(scales, [cpu[0] * x / scales[0] for x in scales], ":", color=line.get_color())
        scales, rss = series(runs, stage, lambda s: max(s["driver_rss_mib"], s["worker_rss_mib"]) / 1024)
        mem_ax.plot(scales, rss, "o-", color=line.get_color(), label=f"{stage} peak RSS")
    for kind, label in (("ray::ImplicitFu", "sweep: trials"), ("ray::FitActor", "sweep: fit actor"),
                        ("driver", "sweep: driver")):  # where the sweep's CPU seconds go (titles may be cut short)
        scales, cpu = series(runs, "sweep", lambda s: sum(v for k, v in s.get("cpu_by_kind", {}).items()
                                                          if k.startswith(kind)) or float("nan"))
        line, = cpu_ax.plot(scales, cpu, "x--", label=label)
        per_run = [c / n for c, n in zip(cpu, series(runs, "sweep", lambda s: s["runs"])[1])]
        run_ax.plot(scales, per_run, "x-", color=line.get_color(), label=label.removeprefix("sweep: "))
    scales, cpu = series(runs, "sweep", lambda s: s["cpu_s"] / s["runs"])
    run_ax.plot(scales, cpu, "o-", color="black", label="all processes")
    scales, walls = series(runs, "fit", lambda s: s.get("fit_1thread_s", float("nan")))
    time_ax.plot(scales, walls, "x--", color="gray", label="fit, 1 BLAS thread")
    scales, store = series(runs, "sweep", lambda s: s["object_store_mib"] / 1024)
    mem_ax.plot(scales, store, "s--", color="black", label="object store (sweep)")
    ticks = sorted({r["scale"] for r in runs})
    for ax, title, unit in ((time_ax, "wall time per stage (dotted: linear)", "seconds"),
                            (cpu_ax, "CPU seconds, all processes (dotted: linear)", "CPU seconds"),
                            (run_ax, "the sweep's CPU seconds per run (flat: linear)", "CPU seconds per run"),
                            (mem_ax, "peak resident memory, any process", "GiB")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"1/{round(1 / x)}" if x < 1 else f"{x:g}" for x in ticks])
        ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
        if ax is not run_ax:
            ax.set_yscale("log")
        ax.set_xlabel("scale (1 = 800K documents, 512 runs)")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    run_ax.set_ylim(bottom=0)
    time_ax.legend(fontsize=8)
    cpu_ax.legend(fontsize=8)
    run_ax.legend(fontsize=8)
    mem_ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="--json files of bench_paper_scale.py")
    parser.add_argument("--out", default=str(REPO / "docs" / "figures" / "paper_scale.svg"))
    args = parser.parse_args(argv)
    draw([json.loads(Path(p).read_text()) for p in args.runs], Path(args.out))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
