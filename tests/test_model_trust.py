"""A model directory is code (issue 18, case 2): a forged pickle is refused before it runs,
the unpickled object must be the estimator model.json names, CAUSALMIX_MODEL_KEY signs what
`fit` writes and every loader (the serve watcher too) requires the signature, and `serve`
will not watch a directory others can write."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
from sklearn.linear_model import LinearRegression

from causalmix import launch
from causalmix.causal.model_dir import CHECKSUMS, ESTIMATOR_PKL, KEY_ENV, SIGNATURE, load_model_dir
from causalmix.core.errors import UserError
from tests.serve_model import DOMAINS, fit_synthetic_model_dir


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    return fit_synthetic_model_dir(tmp_path / "model", estimator="regression", n_runs=40)


def _forge(model_dir: Path, payload) -> None:
    """What a forger does: replace the pickle and rewrite checksums.json to match."""
    data = pickle.dumps(payload)
    (model_dir / ESTIMATOR_PKL).write_bytes(data)
    sums = json.loads((model_dir / CHECKSUMS).read_text())
    sums["files"][ESTIMATOR_PKL] = hashlib.sha256(data).hexdigest()
    (model_dir / CHECKSUMS).write_text(json.dumps(sums))


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_forged_pickle_is_refused_before_its_payload_runs(model, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    _forge(model, _RunsCode(marker))
    with pytest.raises(UserError, match="refusing posix.system|refusing os.system"):
        load_model_dir(model)
    cov = tmp_path / "cov.json"
    cov.write_text(json.dumps({f"x.{d}.normalized_loss": 0.5 for d in DOMAINS}))
    assert launch.main(["recommend", "--model", str(model), "--covariates", str(cov)]) == 2
    assert "cannot be loaded as an estimator" in capsys.readouterr().err
    assert not marker.exists()


def test_the_unpickled_object_must_be_the_named_estimator(model):
    _forge(model, LinearRegression())
    with pytest.raises(UserError, match="holds a sklearn.*LinearRegression, not the RegressionEstimator"):
        load_model_dir(model)
    _forge(model, {"not": "an estimator"})
    with pytest.raises(UserError, match="holds a builtins.dict"):
        load_model_dir(model)


def test_a_signing_key_signs_fit_and_is_required_by_loaders(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k1")
    signed = fit_synthetic_model_dir(tmp_path / "signed", estimator="regression", n_runs=40)
    assert json.loads((signed / SIGNATURE).read_text())["algorithm"] == "hmac-sha256"
    assert load_model_dir(signed).estimator_name == "regression"
    monkeypatch.setenv(KEY_ENV, "k2")
    with pytest.raises(UserError, match="signature does not match"):
        load_model_dir(signed)
    monkeypatch.delenv(KEY_ENV)
    unsigned = fit_synthetic_model_dir(tmp_path / "unsigned", estimator="regression", n_runs=40)
    assert not (unsigned / SIGNATURE).exists()
    load_model_dir(unsigned)  # without a key nothing is required
    monkeypatch.setenv(KEY_ENV, "k1")
    with pytest.raises(UserError, match="is not signed"):
        load_model_dir(unsigned)
    # a forger without the key: new pickle, new checksums, the old signature
    _forge(signed, LinearRegression())
    with pytest.raises(UserError, match="signature does not match"):
        load_model_dir(signed)


def test_the_serve_watcher_requires_the_signature_too(tmp_path, monkeypatch, capsys):
    from causalmix.actors.serve.deployment import ServeSettings
    from causalmix.commands.serve import _reload_if_new

    monkeypatch.setenv(KEY_ENV, "k1")
    model = fit_synthetic_model_dir(tmp_path / "model", estimator="regression", n_runs=40)
    settings = ServeSettings(model=str(model), version=load_model_dir(model).version)
    monkeypatch.delenv(KEY_ENV)
    fit_synthetic_model_dir(model, estimator="regression", n_runs=40, seed=1)  # an unsigned refit
    monkeypatch.setenv(KEY_ENV, "k1")
    applied = []
    monkeypatch.setattr("causalmix.actors.serve.deployment.reload", lambda s: applied.append(s.version))
    assert _reload_if_new(settings, model, "stamp") == "stamp"
    assert applied == [] and "is not signed" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["dir", "parent", "file"])
def test_serve_refuses_to_watch_a_directory_others_can_write(tmp_path, monkeypatch, capsys, where):
    monkeypatch.delenv(KEY_ENV, raising=False)
    model = fit_synthetic_model_dir(tmp_path / "shared" / "model", estimator="regression", n_runs=40)
    target = {"dir": model, "parent": model.parent, "file": model / ESTIMATOR_PKL}[where]
    target.chmod(target.stat().st_mode | 0o022)
    assert launch.main(["serve", "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"{target} is writable by other users" in err and "--watch 0" in err


class _Call:
    """A pickle that calls `func(*args)` when loaded (the shape of every known gadget)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _gadgets(victim: Path) -> dict:
    import builtins
    import shutil

    import numpy as np
    import scipy.io

    return {"scipy.io.FortranFile": _Call(scipy.io.FortranFile, str(victim), "w"),
            "numpy.memmap": _Call(np.memmap, str(victim), np.uint8, "w+", 0, (4,)),
            "numpy.save": _Call(np.save, str(victim), np.zeros(2)),
            "builtins.open": _Call(builtins.open, str(victim), "w"),
            "shutil.rmtree": _Call(shutil.rmtree, str(victim.parent)),
            "builtins.eval": _Call(eval, f"open({str(victim)!r}, 'w')"),
            "importlib.import_module": _Call(__import__("importlib").import_module, "subprocess")}


def test_a_forged_pickle_has_no_side_effect_with_or_without_a_key(model, tmp_path, monkeypatch):
    """Issue 29, case 3: a class of an allowed package that acts when constructed (FortranFile
    truncated any writable file before the type check) is refused by name, before it is called."""
    victim = tmp_path / "victim" / "keep.txt"
    victim.parent.mkdir()
    victim.write_text("precious")
    for name, gadget in _gadgets(victim).items():
        _forge(model, gadget)
        monkeypatch.delenv(KEY_ENV, raising=False)
        with pytest.raises(UserError, match="refusing"):
            load_model_dir(model)
        monkeypatch.setenv(KEY_ENV, "a key the forger lacks")
        with pytest.raises(UserError, match="not signed"):
            load_model_dir(model)
        assert victim.read_text() == "precious", name


def test_every_allowed_name_resolves():
    """The allow-list names classes that exist (a rename upstream would make a model unloadable)."""
    import importlib

    from causalmix.causal.safe_pickle import ALLOWED

    missing = []
    for qualified in sorted(ALLOWED):
        module, name = qualified.rsplit(".", 1)
        if not hasattr(importlib.import_module(module), name):
            missing.append(qualified)
    assert not missing


def test_sieve_dml_boosting_nuisance_loads_through_the_allow_list():
    """sieve-dml picks a HistGradientBoostingRegressor nuisance when it predicts best (the
    paper-scale pool's real features at 64 runs did): its fitted parts must load."""
    import pickle

    import numpy as np

    from causalmix.causal.safe_pickle import load_estimator_pickle
    from causalmix.causal.sieve_dml import _nuisance_learners

    rng = np.random.default_rng(0)
    X = rng.random((120, 3))
    fitted = _nuisance_learners(3)["boosting"].fit(X, X[:, 0] + 0.1 * rng.random(120))
    loaded = load_estimator_pickle(pickle.dumps(fitted))
    assert np.array_equal(loaded.predict(X), fitted.predict(X))
