"""The one exception type that means "the user gave bad input"."""


class UserError(Exception):
    """Bad input from the user (file, field or value). `launch.py` prints the
    message without a traceback and exits with status 2; anything else is a bug
    and keeps its traceback."""



class RunsFailed(Exception):
    """Some runs of a long job failed after their retries while the others finished and were
    kept; a rerun (e.g. `validate --resume`) retries only the failed ones. `launch.py` prints
    the message and exits with status 1."""


class SweepIncomplete(RuntimeError):
    """A sweep ended with runs missing (failed trials or an interruption): what `launch.py
    sweep` reports with exit status 1. `summary` is its sweep.json record."""

    def __init__(self, summary: dict):
        self.summary = summary
        super().__init__(f"sweep {summary.get('status')}: {summary.get('runs_done')} of "
                         f"{summary.get('runs_total')} runs done; errors: {summary.get('errors', [])[:3]}")


class ClusterLost(Exception):
    """The Ray cluster a long-running command stands on went away under it (e.g. the raylet
    died under `serve`). `launch.py` prints the message and exits with status 4."""
