"""Diagnostics through `logging`: every module logs under the `causalmix` logger; `launch.py`
configures it from `--log-level` (stderr, one plain line per record: `warning: ...`,
`error: ...`, info as it is), so stdout keeps only each command's results (JSON, tables). A
notebook that imports the API and configures nothing sees warnings and errors only (Python's
last-resort handler), and can attach its own handler to `causalmix`."""
from __future__ import annotations

import argparse
import logging
import sys

ROOT = "causalmix"
LEVELS = ("debug", "info", "warning", "error")
_state = {"level": logging.INFO}


def get_logger(module: str) -> logging.Logger:
    """The logger of `module` (its __name__) under the `causalmix` root."""
    return logging.getLogger(module if module.split(".")[0] == ROOT else f"{ROOT}.{module}")


class CliFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (a test's capture, a
    redirected stream), not to the one there when the handler was made."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure(level: str = "info") -> None:
    """Route `causalmix` records of `level` and above to stderr (replacing an earlier call's
    handler). At debug, other libraries' records (Ray, MLflow, transformers) show too."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {LEVELS}, got {level!r}")
    numeric = getattr(logging, level.upper())
    _state["level"] = numeric
    root = logging.getLogger(ROOT)
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    handler = StderrHandler()
    handler.setFormatter(CliFormatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(numeric)
    root.propagate = False
    if numeric <= logging.DEBUG:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")


def ray_init_kwargs() -> dict:
    """Ray's own output at the configured level: its workers' stdout/stderr reach the driver
    and its INFO lines show only at debug; otherwise Ray says only warnings and errors (a
    trial's or task's exception still reaches the driver as the error it raised)."""
    debug = _state["level"] <= logging.DEBUG
    return {"log_to_driver": debug, "logging_level": logging.INFO if debug else logging.WARNING}


def quiet_ray_data() -> None:
    """Ray Data prints its INFO lines (execution plans, "Starting execution of Dataset") through
    a console handler of its own, whatever ray.init's logging_level; keep that handler to
    warnings below debug (its file handler still gets everything, in the session's logs)."""
    if _state["level"] <= logging.DEBUG:
        return
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


def common_options():
    """The options the CLI and every sub-command take (argparse parent parser), before or after
    the sub-command. No default (SUPPRESS): a sub-parser would otherwise reset a value given
    before its name (`causalmix --log-level warning pool info`); unset reads as info."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--log-level", dest="log_level", choices=LEVELS, default=argparse.SUPPRESS,
                        help="diagnostics on stderr at this level and above (default info); debug also "
                        "shows Ray's and its workers' logs")
    return parser
