"""Causal estimation of mixture returns and policy extraction (pure; no Ray imports).

runs_table   read/validate runs tables, import RegMix's released CSVs
covariates   pool covariates from a per-document features table
featurizers  treatment featurizers (curvature in the mixture)
estimators   causal-forest (CausalForestDML), linear-dml, regression; regmix.py: the RegMix baseline
policy       analytic and search trust-region policies, RegMix's top-k policy
model_dir    self-describing, checksummed model directories and FittedMixtureModel
"""
