"""Learning curves of a proxy or target run: every `log_every` optimiser steps (and on the last
one) the step hook of `proxy.train.train_packed` becomes one curve point, handed to `emit`
(the Tune trainable's `tune.report`, a list's `append` in a Ray task)."""
from __future__ import annotations

import math
import time
from typing import Callable

from causalmix.proxy.train import StepInfo

CURVE_KEYS = ("train_loss", "lr", "grad_norm", "tokens_per_s", "step_tokens")
"""Metrics of one curve point besides `step` (what a tracker plots per run)."""


class LearningCurve:
    """A step hook (`on_step(step, loss, info)`) that emits a curve point every `log_every`
    steps. tokens_per_s is over the document tokens since the previous point; grad_norm is
    NaN with clipping off. A `then` hook, when given, runs on every step after it."""

    def __init__(self, log_every: int, emit: Callable[[dict], None], *,
                 then: Callable[[int, float, StepInfo], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        self.log_every = log_every
        self.emit = emit
        self.then = then
        self.clock = clock
        self._since = clock()
        self._tokens = 0

    def __call__(self, step: int, loss: float, info: StepInfo) -> None:
        self._tokens += info.tokens
        if step % self.log_every == 0 or step == info.total_steps:
            now = self.clock()
            elapsed = now - self._since
            grad_norm = math.nan if info.grad_norm is None else float(info.grad_norm)
            self.emit({"step": int(step), "train_loss": float(loss), "lr": float(info.lr),
                       "grad_norm": grad_norm,
                       "tokens_per_s": self._tokens / elapsed if elapsed > 0 else math.nan,
                       "step_tokens": int(info.tokens)})
            self._since, self._tokens = now, 0
        if self.then is not None:
            self.then(step, loss, info)


def expected_points(total_steps: int, log_every: int) -> int:
    """Curve points of a run of `total_steps` optimiser steps."""
    return total_steps // log_every + (total_steps % log_every != 0)


def curve_hook(log_every: int, emit: Callable[[dict], None],
               then: Callable[[int, float, StepInfo], None] | None = None):
    """The step hook of a run: curve points to `emit` every `log_every` steps, then `then`;
    just `then` with curves off (log_every 0)."""
    return LearningCurve(log_every, emit, then=then) if log_every else then
