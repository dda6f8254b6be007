"""The package layering of docs/architecture.md, checked on the source: no module imports from a
package above its own, no import circle between modules, and the pure packages import no Ray.

The import graph is read with `ast` (every import statement, function-local ones included, since
a deferred import still closes a circle when it runs); only the Ray check imports anything, in
one subprocess."""
from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Lowest first. A module may import its own package and packages of lower layers only; packages
# of one layer do not import each other, so each can be read (and tested) without its siblings.
# Why this order: core is plumbing without domain logic; the simplex, model loading and the
# per-document features need only core; causal/ is arithmetic on arrays and tables (its covariates
# read the features); validation/ compares outcomes with causal/'s objective; proxy training,
# reporting (which shows validation/'s comparison) and the HTTP schemas each read causal/'s tables;
# datapool/ reads pools with proxy's and causal's helpers, and target/ spreads proxy's training
# loop over data-parallel ranks; design/ decides which runs to make from a pool and how a run of
# several workers is placed (target/'s settings); actors/ is the Ray layer that places all of it on
# a cluster; the CLI (commands/) and the Python API (causalmix/) call the stages; launch.py and the
# cluster install script sit on top, with testing/ (harnesses for tests and benchmarks).
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("mixture_space", "lm", "features"),
    ("causal",),
    ("validation",),
    ("proxy", "reporting", "service"),
    ("datapool", "target"),
    ("design",),
    ("actors",),
    ("commands", "causalmix"),
    ("launch", "cluster", "testing"),
]
LAYER = {package: i for i, packages in enumerate(LAYERS) for package in packages}

# Packages that never import Ray at module level: what an actor calls, tested without Ray.
PURE = ("core", "mixture_space", "lm", "features", "causal", "validation", "proxy", "reporting", "service",
        "datapool", "target", "design")


NAMESPACE = "causalmix"
"""The installed namespace the packages of LAYERS live under ("causalmix": `causalmix.core`), or
"" while they are top-level names."""
OUTSIDE = ("launch", "cluster", "testing")
"""Parts of a checkout that are not installed under the namespace."""


def _name(parts: tuple[str, ...]) -> str:
    inside = NAMESPACE and parts[0] not in OUTSIDE and parts[0] != NAMESPACE
    return ".".join([NAMESPACE, *parts] if inside else parts)


def package_of(module: str) -> str:
    """The LAYERS package of a module name (`causalmix.core.errors` and `core.errors`: core)."""
    parts = module.split(".")
    if NAMESPACE and parts[0] == NAMESPACE:
        parts = parts[1:] if len(parts) > 1 and parts[1] in LAYER and parts[1] != NAMESPACE else [NAMESPACE]
    return parts[0]


def _modules() -> dict[str, Path]:
    found = {"launch": REPO / "launch.py"}
    for package in LAYER:
        if (REPO / package).is_dir():
            for path in (REPO / package).rglob("*.py"):
                parts = path.relative_to(REPO).with_suffix("").parts
                found[_name(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(name: str, modules: dict) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def import_graph() -> dict[str, dict[str, int]]:
    """{module: {imported module of this repository: line of the first such import}}."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, *([base] if base else [])])
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                target = _resolve(name, modules)
                if target and target != module:
                    targets.setdefault(target, node.lineno)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, dict]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root), on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child), on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles():
    graph = import_graph()
    described = [" <-> ".join(component) + ": " + "; ".join(
        f"{a}:{graph[a][b]} imports {b}" for a in component for b in graph[a] if b in component)
        for component in cycles(graph)]
    assert not described, "import circles:\n" + "\n".join(described)


def test_cycle_finder_sees_a_circle():
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def test_no_module_imports_from_a_higher_layer():
    upward = [f"{module}:{line} imports {target}"
              for module, targets in import_graph().items()
              for target, line in targets.items()
              if (mine := package_of(module)) != (theirs := package_of(target))
              and LAYER[theirs] >= LAYER[mine]]
    assert not upward, "imports against the layering (tests/test_layering.py: LAYERS):\n" + "\n".join(upward)


_CHECK_RAY = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
    if "ray" in sys.modules:
        print(name)
        break
"""


def test_pure_packages_import_no_ray():
    modules = sorted(m for m in _modules() if package_of(m) in PURE)
    done = subprocess.run([sys.executable, "-c", _CHECK_RAY, json.dumps(modules)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not done.stdout.strip(), f"importing {done.stdout.strip()} imports ray (a pure package: {PURE})"


@pytest.mark.skipif(not NAMESPACE, reason="top-level packages: pyproject.toml finds them by name")
def test_every_package_folder_is_installed():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {_name(init.parent.relative_to(REPO).parts) for package in LAYER if package not in OUTSIDE
               for init in (REPO / package).rglob("__init__.py")}
    assert folders <= listed, f"pyproject.toml [tool.setuptools] packages lacks {sorted(folders - listed)}"
