"""The one exception type that means "the user gave bad input"."""


class UserError(Exception):
    """Bad input from the user (file, field or value). `launch.py` prints the
    message without a traceback and exits with status 2; anything else is a bug
    and keeps its traceback."""



class RunsFailed(Exception):
    """Some runs of a long job failed after their retries while the others finished and were
    kept; a rerun (e.g. `validate --resume`) retries only the failed ones. `launch.py` prints
    the message and exits with status 1."""
