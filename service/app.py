"""The recommender's FastAPI app, over a swappable fitted model. No Ray here.

The same app runs inside the Ray Serve deployment (`actors.serve.deployment`) and
behind bare uvicorn (the benchmark's baseline), so both serve identical routes.
Requests read `ModelSlot.current` once, so a request that started on one model
version finishes on it while a reload installs the next.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from causalmix.core.errors import UserError
from causalmix.service import schemas
from causalmix.service.schemas import (Health, ModelInfo, PredictRequest, PredictResponse,
                                  RecommendRequest, RecommendResponse, error)

# Deferred on purpose, so that importing this module does not load scikit-learn and scipy: the
# function-local imports (of these libraries or of this project's modules that import them).

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1 << 20
# A 422 lists at most this many errors (a 10,000-row predict could otherwise echo them all).
MAX_REPORTED_ERRORS = 50
# What FastAPI's HTTPException says when the body is not JSON it could parse.
UNPARSABLE_BODY = "There was an error parsing the body"
# Policies cheap enough to answer on the event loop.
INLINE_POLICIES = frozenset({"analytic"})


def to_builtin(value: Any) -> Any:
    """numpy scalars/arrays and tuples inside a result, as plain JSON-ready Python."""
    if isinstance(value, dict):
        return {str(k): to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_builtin(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def probe_covariates(info: dict, covariate_names: list[str]) -> dict[str, float]:
    """A pool inside what the model was fitted on: the middle of each covariate's fitted range
    (`info()["fitted_on"]["covariate_ranges"]`, {name: [min, max]}), 0 where none is given."""
    ranges = (info.get("fitted_on") or {}).get("covariate_ranges") or {}
    return {name: (float(ranges[name][0]) + float(ranges[name][1])) / 2 if name in ranges else 0.0
            for name in covariate_names}


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """One fitted model as the service holds it; replaced whole on reload, never mutated."""

    model: Any
    model_dir: str
    info: dict
    probe: dict[str, float]

    @property
    def version(self) -> str:
        return str(self.model.version)

    def answer_probe(self) -> dict:
        """Recommend for the probe pool; raises unless the answer is a finite mixture."""
        result = self.model.recommend(self.probe, policy="analytic", reference="equal")
        weights = np.asarray(list(result["mixture"].values()), dtype=float)
        if weights.shape != (len(self.model.domains),) or not np.all(np.isfinite(weights)):
            raise RuntimeError(f"model {self.version} from {self.model_dir} answered the health "
                               f"probe with a bad mixture: {result['mixture']}")
        return result


class ModelSlot:
    """Holds the model the service answers with; `load` builds and checks a new one,
    `install` swaps it in with one reference assignment."""

    def __init__(self, loader: Callable[[str], Any] | None = None):
        self._loader = loader
        self._current: LoadedModel | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def load(self, model_dir: str) -> LoadedModel:
        loader = self._loader
        if loader is None:
            from causalmix.causal.model_dir import load_model_dir as loader
        model = loader(model_dir)
        info = to_builtin(model.info())
        loaded = LoadedModel(model=model, model_dir=str(model_dir), info=info,
                             probe=probe_covariates(info, list(model.covariate_names)))
        loaded.answer_probe()
        return loaded

    def install(self, loaded: LoadedModel) -> None:
        self._current = loaded

    def require(self) -> LoadedModel:
        loaded = self._current
        if loaded is None:
            raise HTTPException(status_code=503, detail="no model is loaded yet")
        return loaded

    def check_health(self) -> None:
        """Raise unless a model is loaded and answers the probe."""
        loaded = self._current
        if loaded is None:
            raise RuntimeError("no model is loaded")
        loaded.answer_probe()


def _too_large_detail(max_body_bytes: int) -> list[dict]:
    return [error(("body",), f"request body is larger than the limit of {max_body_bytes} bytes",
                  "body_too_large")]


class _BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI passes it through while it reads the body."""

    def __init__(self, max_body_bytes: int):
        super().__init__(status_code=422, detail=_too_large_detail(max_body_bytes))


class _BodyLimit:
    """422 for a request body over the limit: at once when Content-Length says so, else as
    soon as the bytes read pass it. (FastAPI's own `max_body_size` answers with a plain-text
    413 that the app's exception handlers cannot reshape.)"""

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    response = JSONResponse(status_code=422, content={"detail": _too_large_detail(limit)})
                    return await response(scope, receive, send)
                break
        received = 0

        async def receive_within_limit():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        await self.app(scope, receive_within_limit, send)


def _plain_errors(errors) -> list[dict]:
    """Validation errors without the offending input (it may be huge, or NaN, which JSON
    cannot carry)."""
    return [error([part for part in e.get("loc", ()) if part not in schemas.UNION_TAGS],
                  e.get("msg", ""), e.get("type", "value_error"))
            for e in list(errors)[:MAX_REPORTED_ERRORS]]


def _reject(errors: list[dict]) -> None:
    if errors:
        raise RequestValidationError(errors[:MAX_REPORTED_ERRORS])


def build_app(slot: ModelSlot, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    app = FastAPI(
        title="CausalMix recommender",
        description="Data-mixture recommendations from a fitted CausalMix model. "
                    "Bad requests get 422 with the offending field in `detail[].loc`.",
        version="1",
    )

    app.add_middleware(_BodyLimit, max_body_bytes=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _plain_errors(exc.errors())})

    @app.exception_handler(StarletteHTTPException)  # what FastAPI raises for a body it cannot parse
    async def _unparsable(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers 400 for a body its JSON parser gave up on (e.g. nested past Python's
        # recursion limit); the API promises 422 with a `loc` for every bad body.
        if exc.status_code == 400 and exc.detail == UNPARSABLE_BODY:
            return JSONResponse(status_code=422, content={"detail": [error(
                ("body",), "the body could not be parsed as JSON (nested too deeply?)", "json_invalid")]})
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("request to %s failed", request.url.path)
        return JSONResponse(status_code=500, content={"detail": f"{type(exc).__name__}: {exc}"})

    def recommend_now(request: RecommendRequest) -> RecommendResponse:
        loaded = slot.require()
        try:
            result = schemas.recommend(loaded.model, request)
        except schemas.InvalidRequest as exc:
            _reject(exc.errors)
        return RecommendResponse.model_validate(to_builtin(result))

    @app.post("/v1/recommend", response_model=RecommendResponse)
    async def recommend(request: RecommendRequest) -> RecommendResponse:
        # The analytic policy answers in well under a millisecond, less than a hop to a
        # worker thread costs; the search policies score thousands of candidates, off the loop.
        if request.policy in INLINE_POLICIES:
            return recommend_now(request)
        return await run_in_threadpool(recommend_now, request)

    @app.post("/v1/predict", response_model=PredictResponse)
    def predict(request: PredictRequest) -> PredictResponse:
        loaded = slot.require()
        model = loaded.model
        mixtures, covariates, errors = schemas.predict_matrices(request, model.domains,
                                                                model.covariate_names)
        _reject(errors)
        n = len(mixtures)
        try:
            y = model.predict(np.asarray(mixtures, dtype=float).reshape(n, len(model.domains)),
                              np.asarray(covariates, dtype=float).reshape(n, len(model.covariate_names)))
        except UserError as exc:
            _reject([error(("body",), str(exc))])
        return PredictResponse(y=np.asarray(y, dtype=float).tolist(), model_version=loaded.version)

    @app.get("/v1/model", response_model=ModelInfo)
    def model_info() -> ModelInfo:
        loaded = slot.require()
        info = dict(loaded.info)
        info.update(domains=list(loaded.model.domains),
                    covariate_names=list(loaded.model.covariate_names),
                    version=loaded.version, model_dir=loaded.model_dir)
        info.setdefault("estimator", loaded.model.estimator_name)
        return ModelInfo.model_validate(info)

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        loaded = slot.require()
        try:
            loaded.answer_probe()
        except Exception as exc:  # the point of the endpoint: report, don't crash
            raise HTTPException(status_code=503, detail=f"model cannot answer: {exc}") from None
        return Health(status="ok", model_version=loaded.version)

    return app
