"""The unpickler of a model directory's `estimator.pkl`: it resolves only the exact classes and
functions (by fully-qualified name) that the estimators of causal/fitting.py are made of.

Unpickling calls whatever callables a pickle names, with arguments of its choosing, before any
type check can run: an allow-list by package (all of scipy, all of numpy) admitted
`scipy.io.FortranFile(path, "w")`, which truncates a file when constructed. Every entry here
is a data class (constructed from its own state, touching nothing outside the process) or a
function that only rebuilds arrays. A name not listed fails the load before anything is
called with it, whatever the directory's checksums say.

When an estimator starts using a new class, loading its saved model fails with the class
named (tests/test_causal_model_dir.py and the fit tests load every estimator kind); add the
class here after checking that constructing it does nothing but store state.
"""
from __future__ import annotations

import io
import pickle

ALLOWED = frozenset({
    # containers and the array machinery of numpy's own pickles
    "builtins.complex", "builtins.frozenset", "builtins.set", "builtins.slice", "builtins.range",
    "builtins.bytearray", "collections.OrderedDict", "collections.defaultdict",
    "numpy.dtype", "numpy.ndarray", "numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy._core.numeric._frombuffer",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__generator_ctor", "numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
    # this project's estimators
    "causalmix.causal.estimators.CausalForestEstimator", "causalmix.causal.estimators.LinearDMLEstimator",
    "causalmix.causal.estimators.RegressionEstimator", "causalmix.causal.featurizers.MixtureFeaturizer",
    "causalmix.causal.regmix.RegMixEstimator", "causalmix.causal.sieve_dml.SieveDMLEstimator",
    # econml's DML, causal forest and their parts
    "econml.dml._rlearner._ModelFinal", "econml.dml._rlearner._ModelNuisance",
    "econml.dml.causal_forest.CausalForestDML", "econml.dml.causal_forest._CausalForestFinalWrapper",
    "econml.dml.causal_forest._GenericSingleOutcomeModelFinalWithCovInference",
    "econml.dml.dml.LinearDML", "econml.dml.dml._FinalWrapper", "econml.dml.dml._FirstStageSelector",
    "econml.grf._base_grftree.GRFTree", "econml.grf.classes.CausalForest", "econml.grf.classes.MultiOutputGRF",
    "econml.inference._inference.StatsModelsInference",
    "econml.sklearn_extensions.linear_model.StatsModelsLinearRegression",
    "econml.sklearn_extensions.linear_model.WeightedLasso",
    "econml.sklearn_extensions.linear_model.WeightedLassoCV",
    "econml.sklearn_extensions.linear_model.WeightedLassoCVWrapper",
    "econml.sklearn_extensions.linear_model.WeightedLassoWrapper",
    "econml.sklearn_extensions.linear_model.WeightedMultiTaskLasso",
    "econml.sklearn_extensions.linear_model.WeightedMultiTaskLassoCV",
    "econml.sklearn_extensions.model_selection.FixedModelSelector",
    "econml.sklearn_extensions.model_selection.ListSelector",
    "econml.sklearn_extensions.model_selection.SklearnCVSelector",
    "econml.tree._tree.Tree", "econml.utilities._TransformerWrapper", "econml.utilities.add_intercept",
    # RegMix's LightGBM regressor
    "lightgbm.basic.Booster", "lightgbm.sklearn.LGBMRegressor",
    # scikit-learn nuisance models, featurizers and selection
    "sklearn.ensemble._forest.RandomForestRegressor", "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._ridge.RidgeCV", "sklearn.metrics._scorer._PassthroughScorer",
    "sklearn.model_selection._search.GridSearchCV", "sklearn.model_selection._split._CVIterableWrapper",
    "sklearn.model_selection._split.KFold", "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler", "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.preprocessing._polynomial.PolynomialFeatures", "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree", "sklearn.dummy.DummyRegressor", "sklearn.linear_model._base.LinearRegression",
    # sieve-dml's "boosting" nuisance (HistGradientBoostingRegressor) and its parts
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfSquaredError", "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink", "sklearn._loss.link.Interval",
    "numpy.random.bit_generator.SeedSequence", "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    # sieve-dml's "mlp" nuisance: the network inside a target-standardising wrapper
    "sklearn.compose._target.TransformedTargetRegressor",
    "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
})


class EstimatorUnpickler(pickle.Unpickler):
    """Resolves only the names in `ALLOWED`; anything else fails the load, naming it."""

    def find_class(self, module: str, name: str):
        if f"{module}.{name}" not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: not a class an estimator is made of")
        return super().find_class(module, name)


def load_estimator_pickle(data: bytes):
    """The object in `data`, through `EstimatorUnpickler` (raises on any refused name)."""
    return EstimatorUnpickler(io.BytesIO(data)).load()
