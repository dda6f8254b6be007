"""Per-document features of a pool, without Ray: the model-based ones (`normalized_loss`, `hes`:
`doc_features.py`, forward passes with torch imported inside its functions), the style ones
(`style.py`, plain text), and the features directory they are written to and read from
(`features_io.py`). actors/featurize/ computes them on a cluster; causal/covariates.py turns them
into a pool's covariates."""
