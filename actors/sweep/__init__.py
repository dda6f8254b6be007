"""The sweep on Ray Tune: the driver (`driver.py`: `run_sweep`), its Tune searcher
(`searcher.py`), the trainables (`trainer.py`: a run in one process; `tune_train.py`: a Ray
Train run of several workers; `synthetic_trial.py`: a run scored by a known function), the
progress callback (`progress.py`), the fit actors that refit as runs land (`fit_actor.py`) and
the trackers' callbacks (`tracking.py`); which runs exist and what each is handed is design/'s."""
