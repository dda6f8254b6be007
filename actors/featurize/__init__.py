"""The featurize stage on Ray: the driver (`driver.py`: `FeaturizeConfig`, `featurize`) and the
featurizer actor pool it feeds shards to (`featurizer.py`); the features' maths is features/'s."""
