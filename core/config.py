"""Typed config: a dataclass, filled from a YAML file and then from CLI flags.

Each config dataclass documents its fields with a string right below each field
and checks values in `__post_init__` (raising ValueError). `load_config` turns
unknown keys and failed checks into a `UserError` that names the file and key.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from causalmix.core import inputs
from causalmix.core.errors import UserError
from causalmix.core.inputs import read_yaml_file

T = TypeVar("T")


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict:
    path = Path(path)
    data = read_yaml_file(path, what)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} file {path} must hold a mapping at the top level, not {type(data).__name__}")
    return data


def read_json_file(path: str, what: str):
    """The JSON value in a user's file; a UserError names the file when it is missing, invalid,
    too large, too deep or not UTF-8 (core/inputs.py)."""
    return inputs.read_json_file(path, what)


def config_section(data: dict, section: str | None, fields) -> dict:
    """A file may hold several commands' settings, one mapping per command name (e.g.
    configs/longcot.yaml: `featurize:` and `validate:`); a command reads its own. A file
    without that key is the command's settings as a whole."""
    if section is not None and section not in fields and isinstance(data.get(section), dict):
        return dict(data[section])
    return data


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def build_config(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """`cls(**values)` with nested mappings built into their dataclass fields; unknown or
    missing keys and failed checks raise a UserError naming `where` and the key."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    missing = [name for name, f in fields.items() if _required(f) and name not in values]
    if missing:
        raise UserError(f"{where}: missing required key(s) {missing} (a flag or a --config key)")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        hint = hints.get(name)
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = build_config(hint, value, f"{where}.{name}")
        elif hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: {exc}") from None


def load_config(cls: type[T], yaml_path: str | Path | None = None,
                overrides: Mapping[str, Any] | None = None, *, section: str | None = None) -> T:
    """Build `cls` from an optional YAML file (its `section` when it has one, see
    `config_section`), then overrides (None values are skipped).

    Override keys that are not fields of `cls` are ignored, so an argparse
    namespace can be passed whole. A mapping given for a dataclass field (`proxy: {budget:
    50}`, what the nested flags of core/cli_config.py make) is laid over the file's mapping
    for it, not instead of it.
    """
    values: dict[str, Any] = {}
    where = cls.__name__
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    if yaml_path is not None:
        values.update(config_section(read_yaml_mapping(yaml_path), section, names))
        where = f"config {yaml_path}" + (f" ({section})" if section else "")
    for key, value in (overrides or {}).items():
        if key in names and value is not None:
            if (dataclasses.is_dataclass(hints.get(key)) and isinstance(value, Mapping)
                    and isinstance(values.get(key), Mapping)):
                value = {**values[key], **value}
            values[key] = value
    return build_config(cls, values, where)
