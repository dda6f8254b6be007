"""Reading a user's text, YAML and JSON files with limits: what a careless or hostile file
can cost is bounded, and each refusal is a UserError naming the file.

- text is decoded as UTF-8; a bad byte is named with its offset and line;
- a file over `MAX_INPUT_BYTES` is refused before it is read;
- YAML anchors and aliases are allowed (configs use them), but a document whose aliases
  expand to more than `MAX_YAML_NODES` nodes (a "billion laughs" bomb) is refused before any
  Python object is built;
- JSON deeper than `MAX_JSON_DEPTH` is refused (Python's parser would hit its recursion limit).
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from causalmix.core.errors import UserError

# Manifests, configs, covariates and mixtures are a few kB; this leaves room for generated ones.
MAX_INPUT_BYTES = 16 * 1024**2
MAX_YAML_NODES = 1_000_000
MAX_JSON_DEPTH = 64


def decode_utf8(data: bytes, where: str) -> str:
    """`data` as text; a byte that is not UTF-8 is named with its offset and line in `where`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{where} is not UTF-8 text: byte {exc.start} (line {line}) is "
                        f"{data[exc.start:exc.start + 1]!r}; re-encode the file as UTF-8") from None


def read_text(path: str | Path, what: str, *, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The text of a user's file: it must exist, be at most `max_bytes`, and be UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    size = path.stat().st_size
    if size > max_bytes:
        raise UserError(f"{what} file {path} is {size} bytes, more than the {max_bytes} a {what} may be")
    return decode_utf8(path.read_bytes(), f"{what} file {path}")


def _expanded_nodes(node: yaml.Node, limit: int, memo: dict[int, int]) -> int:
    """How many nodes `node` stands for once every alias is expanded (capped just past `limit`)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a node met again while still being counted is a cycle: too big
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        total += _expanded_nodes(child, limit, memo)
        if total > limit:
            break
    memo[key] = min(total, limit + 1)
    return memo[key]


def load_yaml_text(text: str, where: str, *, max_nodes: int = MAX_YAML_NODES):
    """`yaml.safe_load` of `text`, refusing a document whose aliases expand past `max_nodes`."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node, max_nodes, {}) > max_nodes:
            raise UserError(f"{where}: its anchors and aliases expand to more than {max_nodes} values "
                            "(an alias bomb, or a recursive alias); write the values out instead")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise UserError(f"{where} is not valid YAML: {exc}") from None
    except RecursionError:
        raise UserError(f"{where} is nested too deeply to read") from None
    finally:
        loader.dispose()


def _depth(value, limit: int) -> int:
    """Nesting depth of a parsed JSON value, counted without recursion (stops past `limit`)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def load_json_text(text: str, where: str, *, max_depth: int = MAX_JSON_DEPTH):
    """`json.loads` of `text`, refusing values nested deeper than `max_depth`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        value = None
        depth = max_depth + 1
    else:
        depth = _depth(value, max_depth)
    if depth > max_depth:
        raise UserError(f"{where}: JSON nested more than {max_depth} levels deep; an input this "
                        "deep is not one this command reads")
    return value


def read_yaml_file(path: str | Path, what: str):
    return load_yaml_text(read_text(path, what), f"{what} file {path}")


def read_json_file(path: str | Path, what: str):
    return load_json_text(read_text(path, what), f"{what} file {path}")
