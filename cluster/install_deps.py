"""Install this project's dependencies on a cluster node (`setup_commands` of the ray up files).

    python cluster/install_deps.py --torch cuda   # GPU worker: CUDA build of torch
    python cluster/install_deps.py --torch cpu    # head / CPU node: CPU-only torch (no CUDA libs)
    python cluster/install_deps.py --torch cuda --dry-run   # print the pip commands only

The versions come from pyproject.toml's `[project] dependencies` and the extras a cluster's
jobs use (`tracking` for --tracking, `harness` for lm_eval dev tasks), the one place they are
pinned. Only dependencies are installed, not the project's code: each job brings its own
code with `ray job submit --working-dir .`, so a node never runs a stale copy.
torch is installed first from the right wheel index, so the second pip call finds it
satisfied and keeps it: PyPI's Linux torch wheel is the CUDA build (it bundles the CUDA
runtime and needs only the NVIDIA driver); the CPU build comes from PyTorch's CPU index.
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# Optional features a cluster node should be able to run (pyproject.toml's extras)
CLUSTER_EXTRAS = ("tracking", "harness")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_INDEX = "https://download.pytorch.org/whl/{tag}"


def project_dependencies(pyproject: Path = PYPROJECT, extras=CLUSTER_EXTRAS) -> list[str]:
    with open(pyproject, "rb") as fh:
        project = tomllib.load(fh)["project"]
    optional = project.get("optional-dependencies", {})
    return [*project["dependencies"], *(spec for extra in extras for spec in optional[extra])]


def requirement_name(spec: str) -> str:
    return re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0].strip().lower()


def pip_commands(torch: str, cuda_tag: str | None = None, pyproject: Path = PYPROJECT) -> list[list[str]]:
    """The pip invocations, in order: torch from its index, then everything else."""
    deps = project_dependencies(pyproject)
    torch_specs = [d for d in deps if requirement_name(d) == "torch"]
    if len(torch_specs) != 1:
        raise SystemExit(f"{pyproject}: expected one torch requirement, found {torch_specs}")
    pip = [sys.executable, "-m", "pip", "install", "--no-cache-dir"]
    if torch == "cpu":
        torch_cmd = [*pip, "--index-url", CPU_INDEX, torch_specs[0]]
    elif cuda_tag:
        torch_cmd = [*pip, "--index-url", CUDA_INDEX.format(tag=cuda_tag), torch_specs[0]]
    else:
        torch_cmd = [*pip, torch_specs[0]]
    return [torch_cmd, [*pip, *(d for d in deps if requirement_name(d) != "torch")]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--torch", choices=("cpu", "cuda"), required=True,
                        help="cpu: CPU-only torch for head/CPU nodes; cuda: CUDA torch for GPU nodes")
    parser.add_argument("--cuda-tag", default=None,
                        help="with --torch cuda: a PyTorch CUDA wheel index tag (e.g. cu126) when the node's "
                             "driver is older than the CUDA of PyPI's default build")
    parser.add_argument("--dry-run", action="store_true", help="print the pip commands, run nothing")
    args = parser.parse_args(argv)
    if args.cuda_tag and args.torch != "cuda":
        parser.error("--cuda-tag applies to --torch cuda only")
    for cmd in pip_commands(args.torch, args.cuda_tag):
        print(shlex.join(cmd), flush=True)
        if not args.dry_run:
            subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
