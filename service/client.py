"""A small HTTP client of the recommender service (standard library only, so that
`launch.py recommend --endpoint URL` works wherever the CLI runs)."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from causalmix.core.errors import UserError


def _describe_422(body: dict) -> str:
    details = body.get("detail")
    if not isinstance(details, list):
        return str(details)
    return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in details)


def call(url: str, path: str, payload: dict | None = None, *, timeout_s: float = 30.0) -> dict:
    """POST `payload` (or GET when None) to `url` + `path`; the JSON answer, or a UserError
    that names the fields the service rejected."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UserError(f"endpoint {url!r} is not an http(s) URL (expected e.g. http://127.0.0.1:8000)")
    target = url.rstrip("/") + path
    try:
        data = None if payload is None else json.dumps(payload, allow_nan=False).encode("utf-8")
    except ValueError as exc:  # json.dumps refuses NaN and infinity before anything is sent
        raise UserError(f"the request to {target} holds a non-finite number: {exc}") from None
    request = urllib.request.Request(target, data=data, method="GET" if data is None else "POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"detail": raw.decode("utf-8", "replace")[:500]}
        if exc.code == 422:
            raise UserError(f"{target} rejected the request: {_describe_422(body)}") from None
        raise UserError(f"{target} answered HTTP {exc.code}: {body.get('detail')}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"cannot reach the recommender at {target}: {reason} "
                        "(is `launch.py serve` running there?)") from None


def recommend_via_endpoint(url: str, request_dict: dict, *, timeout_s: float = 30.0) -> dict:
    """The service's answer to POST /v1/recommend: {"mixture", "expected_gain", "interval",
    "policy", "model_version", "support"} (the same object `recommend` prints locally).

    `request_dict` holds `covariates` ({name: value}) or `pool_features`
    ({domain: {feature: mean}}), and optionally `policy`, `trust_radius`, `reference`
    ({domain: weight} or "equal"), `alpha`, `top_k`, `seed`.
    """
    if not isinstance(request_dict, dict):
        raise UserError(f"a recommend request must be a JSON object, got {type(request_dict).__name__}")
    return call(url, "/v1/recommend", request_dict, timeout_s=timeout_s)


def model_info_via_endpoint(url: str, *, timeout_s: float = 30.0) -> dict:
    """GET /v1/model: domains, covariate names, estimator, version, what it was fitted on."""
    return call(url, "/v1/model", timeout_s=timeout_s)
