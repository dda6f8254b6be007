"""Command-line flags generated from a config dataclass, so that a default and its help live
in one place: the field and the docstring right below it.

`ConfigFlags(SweepConfig, ("runs", "seed"), nested={"proxy": ("model", "budget")})` gives one
flag per named field: `--runs` (dest `runs`), typed from the annotation, with the field's
docstring as help plus "(default 24)" from the field default. A nested dataclass's fields keep
their plain flag (`--model`, dest `model`) and land in that field's mapping (`proxy: {model:
...}`). Every flag defaults to None, so `load_config` layers the dataclass defaults, then the
YAML of `--config FILE`, then the flags given.

Why a helper of our own rather than tyro, simple-parsing or jsonargparse: each of them builds
its own parser, with its own flag spelling (`--proxy.model`), bool syntax, namespace layout
(`args.config.runs`) or ArgumentParser subclass. The CLI is stdlib argparse sub-commands that
share parent parsers, mutually exclusive groups and custom `type=` converters, and its flag
names and dests are a public contract (docs, tests, cluster job specs); generating plain
argparse arguments keeps all of that as it is.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

from causalmix.core.config import load_config

CONFIG_HELP = "YAML file with {name} fields (flags given override it)"
_type_hints = functools.cache(typing.get_type_hints)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field: its docstring, whitespace collapsed}: the string literal right below each
    annotated field in the class body (a subclass's own docstring wins over its base's)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def format_default(value: Any) -> str | None:
    """How a default reads in --help; None where there is nothing to show (no value, or an
    empty one: the field's docstring says what its absence means)."""
    if value is None or value == "" or value == () or value == []:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def _without_none(hint):
    """X for `X | None` / Optional[X]; the hint itself otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        return typing.Union[tuple(args)]
    return hint


def _argparse_kwargs(name: str, hint, default: Any) -> dict:
    """type / action / choices of one field's flag, from its annotation."""
    hint = _without_none(hint)
    origin = typing.get_origin(hint)
    if hint is bool:
        return {"action": "store_false" if default else "store_true"}
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        return {"choices": choices, "type": type(choices[0])}
    if origin in (tuple, list):
        item = next((a for a in typing.get_args(hint) if a is not Ellipsis), str)
        return {"action": "append", "type": item}
    if hint in (tuple, list):
        return {"action": "append"}
    if hint in (int, float, str):
        return {"type": hint}
    if origin in (typing.Union, types.UnionType):
        return {"type": str}  # e.g. float | str: the dataclass's checks read the text
    raise TypeError(f"field {name!r} ({hint}) has no flag form; set it in the YAML of --config")


@dataclasses.dataclass(frozen=True)
class _Flag:
    path: tuple[str, ...]
    """Field path inside the config: ("runs",) or ("proxy", "model")."""
    dest: str
    """argparse dest (also the flag name, underscores as dashes)."""


def for_the_command_line(text: str) -> str:
    """A field docstring as flag help: the docstrings speak to the code's readers, the help to
    someone at a shell. A field's None is a flag not given; source-file pointers ("(see
    proxy/memory.py)", "of causal/selection.py") are dropped; `launch.py fit` is the command `fit`,
    whichever way it was started."""
    text = re.sub(r"\bNone\b", "not given", text)
    text = re.sub(r"\s*\((?:see )?[\w/]+\.py(?: [A-Z_]+)?\)", "", text)
    text = re.sub(r"\s+(?:of|in|see) [\w/]+/[\w]+\.py\b", "", text)
    text = re.sub(r"\(?(?:see )?[\w/]+/[\w]+\.py\b\s*", "", text)
    return text.replace("`launch.py ", "`")


class ConfigFlags:
    """The flags of one command's config dataclass (see the module docstring)."""

    def __init__(self, cls: type, fields: Iterable[str] = (), *,
                 nested: Mapping[str, Iterable[str | tuple[str, str]]] | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None, section: str | None = None):
        """`fields`: top-level fields with a flag. `nested`: {dataclass field: its fields with a
        flag}, each a name (flag and dest = the name) or (name, dest) where the flag has
        another name (`("workers", "gpus_per_run")` is `--gpus-per-run`). `options`: extra
        argparse keywords by dest (choices, metavar, nargs, type, required, help). `section`: the
        key of this command's mapping in a YAML file that holds several commands'."""
        self.cls = cls
        self.section = section
        self.options = {k: dict(v) for k, v in (options or {}).items()}
        self.flags = [_Flag((name,), name) for name in fields]
        hints = _type_hints(cls)
        for outer, names in (nested or {}).items():
            if not dataclasses.is_dataclass(_without_none(hints[outer])):
                raise TypeError(f"{cls.__name__}.{outer} is not a dataclass field")
            for entry in names:
                name, dest = (entry, entry) if isinstance(entry, str) else entry
                self.flags.append(_Flag((outer, name), dest))
        dests = [f.dest for f in self.flags]
        clash = sorted({d for d in dests if dests.count(d) > 1})
        if clash:
            raise ValueError(f"{cls.__name__}: more than one flag with dest {clash}")
        unknown = sorted(set(self.options) - set(dests))
        if unknown:
            raise ValueError(f"{cls.__name__}: options for flags that do not exist: {unknown}")
        for flag in self.flags:
            self._field(flag.path)

    def _field(self, path: tuple[str, ...]):
        owner = self.cls
        for part in path[:-1]:
            owner = _without_none(_type_hints(owner)[part])
        fields = {f.name: f for f in dataclasses.fields(owner)}
        if path[-1] not in fields:
            raise ValueError(f"{owner.__name__} has no field {path[-1]!r}")
        return owner, fields[path[-1]], _type_hints(owner)[path[-1]]

    def help(self, dest: str) -> str:
        """The help of a flag: the field's docstring and its default."""
        flag = next(f for f in self.flags if f.dest == dest)
        owner, f, _ = self._field(flag.path)
        text = field_docs(owner).get(f.name, "")
        if not text:
            raise ValueError(f"{owner.__name__}.{f.name} has no docstring to be its flag's help")
        text = for_the_command_line(text)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            # argparse cannot require it (--config may give it), so the help says so
            return text + " (required: this flag or --config)"
        default = format_default(field_default(f))
        return text + (f" (default {default})" if default is not None else "")

    def add_to(self, parser, only: Iterable[str] | None = None) -> None:
        """Add the flags (or only those with these dests) to `parser` (a parser or an
        argument group)."""
        wanted = None if only is None else set(only)
        for flag in self.flags:
            if wanted is not None and flag.dest not in wanted:
                continue
            _, f, hint = self._field(flag.path)
            default = field_default(f)
            kwargs = {**_argparse_kwargs(flag.dest, hint, default), **self.options.get(flag.dest, {})}
            name = flag.dest.replace("_", "-")
            kwargs.setdefault("help", self.help(flag.dest))
            if kwargs.get("action") == "store_false":
                name = "no-" + name
                kwargs["help"] += f"; --{name} turns it off"
            # argparse %-formats help text
            kwargs["help"] = kwargs["help"].replace("%", "%%")
            parser.add_argument(f"--{name}", dest=flag.dest, default=None, **kwargs)

    def add_config_argument(self, parser) -> None:
        parser.add_argument("--config", default=None, metavar="FILE",
                            help=CONFIG_HELP.format(name=self.cls.__name__))

    def overrides(self, args: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
        """The namespace as `load_config` overrides: nested flags gathered into their field's
        mapping, other keys as they are (those that are not fields are ignored there)."""
        values = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
        for flag in self.flags:
            if len(flag.path) > 1:
                value = values.pop(flag.dest, None)
                if value is not None:
                    values.setdefault(flag.path[0], {})[flag.path[1]] = value
        return values

    def load(self, args, config_path=None):
        """The config: dataclass defaults, then `config_path` (default: args.config), then flags."""
        values = self.overrides(args)
        given = values.pop("config", None)
        path = config_path if config_path is not None else given
        return load_config(self.cls, path, values, section=self.section)

    def load_resumable(self, args, saved_name: str):
        """`load`, where `--resume` without `--config` reads the settings saved in --out
        (`saved_name` there), so a resume needs only --out."""
        saved = Path(args.out) / saved_name if args.resume and args.config is None and args.out else None
        return self.load(args, saved if saved is not None and saved.is_file() else None)
