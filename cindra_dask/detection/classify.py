"""Cell classifier (cindra §3.5): per-feature cell-fraction logits + logistic regression.

A classifier is a *training set* (``.npz`` with ``training_labels`` and one column per feature), fitted
on every use (≈ 10 ms), as in cindra and suite2p. Fitting, per feature: sort the training values, take
100 grid nodes at evenly spaced ranks, compute the fraction of cells between consecutive nodes, smooth
those fractions with a Gaussian (σ = 2 bins) and turn them into logits ``log(p + 1e-6) − log(1 − p + 1e-6)``.
A feature value maps to the logit of its bin (clipped to the grid range; NaN → the lowest bin), and
``LogisticRegression(C=100, solver="liblinear")`` is fitted on the training logits.

Features are ``normalized_pixel_count``, ``compactness`` (ROI statistics, cindra §3.4) and ``skewness``
of the neuropil-corrected trace (``F − 0.7·Fneu``); the optional shape-only preclassification uses the
first two. The bundled training set (``cindra_dask/data/classifier.npz``) comes from labelled simulated
recordings; ``benchmarks/train_classifier.py`` rebuilds it and ``cindra_dask/data/README.md`` says how.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from cindra_dask.errors import InputError

FEATURE_NAMES: tuple[str, ...] = ("normalized_pixel_count", "compactness", "skewness")
"""Features of the default classifier (cindra's)."""

SHAPE_FEATURE_NAMES: tuple[str, ...] = FEATURE_NAMES[:2]
"""Features of the shape-only preclassification (available before extraction)."""

LABEL_KEY = "training_labels"
MINIMUM_TRAINING_SAMPLES = 100
GRID_NODES = 100
BIN_SMOOTHING_SIGMA = 2.0
_LOGIT_EPSILON = 1e-6
_REGULARISATION_C = 100.0
_BUNDLED_FILE_NAME = "classifier.npz"


class TrainingSet(NamedTuple):
    """Labelled ROIs a classifier is fitted on.

    Attributes
    ----------
    labels : (n,) bool, True for a cell.
    features : (n, k) float64, one column per name in ``feature_names``; all finite.
    feature_names : the k feature names.
    """

    labels: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]


class CellClassifier(NamedTuple):
    """A fitted classifier.

    Attributes
    ----------
    feature_names : the k features it expects.
    grid : (100, k) float64 grid nodes (training values at evenly spaced ranks).
    cell_fraction : (99, k) float64 smoothed fraction of cells between consecutive nodes.
    coefficients, intercept : (k,) float64 weights and the bias of the logistic regression on the
        k logits (fitted with scikit-learn; predicting needs only numpy, so workers that classify
        do not import scikit-learn).
    """

    feature_names: tuple[str, ...]
    grid: np.ndarray
    cell_fraction: np.ndarray
    coefficients: np.ndarray
    intercept: float


def bundled_classifier_path() -> Path:
    """Path of the bundled training set (``cindra_dask/data/classifier.npz``)."""
    return Path(str(resources.files("cindra_dask").joinpath("data", _BUNDLED_FILE_NAME)))


def load_training_set(path: Path | str | None, *, feature_names: Sequence[str] = FEATURE_NAMES) -> TrainingSet:
    """Read and validate a cindra classifier file.

    Parameters
    ----------
    path : ``.npz`` holding ``training_labels`` (n,) (bool or 0/1) and one (n,) numeric column per
        feature; None reads the bundled file.
    feature_names : the columns to read (at least these must be present).

    Raises
    ------
    InputError naming the file when it is missing, unreadable, lacks a key, or holds fewer than 100
    samples, non-binary labels, a single class, mismatched lengths or non-finite values.
    """
    path = bundled_classifier_path() if path is None else Path(path).expanduser()
    expected = f"expected a .npz with '{LABEL_KEY}' and the columns {', '.join(feature_names)} (≥ {MINIMUM_TRAINING_SAMPLES} samples each; main.custom_classifier_path)"
    if not path.is_file():
        raise InputError(f"{path}: classifier file not found; {expected}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            columns = {name: np.asarray(archive[name]) for name in archive.files}
    except Exception as error:
        raise InputError(f"{path}: cannot be read as a classifier ({error.__class__.__name__}: {error}); {expected}") from error
    missing = [name for name in (LABEL_KEY, *feature_names) if name not in columns]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}; {expected}")
    labels = columns[LABEL_KEY]
    problems = []
    for name in (LABEL_KEY, *feature_names):
        column = columns[name]
        if column.ndim != 1 or column.dtype.kind not in "biuf":
            problems.append(f"'{name}' must be a 1-D numeric array, got {column.dtype} with shape {column.shape}")
        elif column.shape != labels.shape:
            problems.append(f"'{name}' has {column.shape[0]} samples but '{LABEL_KEY}' has {labels.shape[0]}")
    if not problems:
        if labels.shape[0] < MINIMUM_TRAINING_SAMPLES:
            problems.append(f"{labels.shape[0]} samples; at least {MINIMUM_TRAINING_SAMPLES} are needed")
        if not np.isin(labels, (0, 1)).all():
            problems.append(f"'{LABEL_KEY}' must hold only 0/1 (or booleans)")
        elif np.unique(labels).size < 2:
            problems.append(f"'{LABEL_KEY}' holds a single class; both cells and non-cells are needed")
        for name in feature_names:
            if not np.isfinite(columns[name]).all():
                problems.append(f"'{name}' holds NaN or infinite values")
    if problems:
        raise InputError(*(f"{path}: {problem}; {expected}" for problem in problems))
    features = np.stack([columns[name].astype(np.float64) for name in feature_names], axis=1)
    return TrainingSet(labels.astype(bool), features, tuple(feature_names))


def save_training_set(path: Path | str, training: TrainingSet) -> Path:
    """Write a training set in cindra's format (``training_labels`` + float32 feature columns)."""
    path = Path(path)
    columns = {name: training.features[:, index].astype(np.float32) for index, name in enumerate(training.feature_names)}
    np.savez_compressed(path, **{LABEL_KEY: training.labels.astype(bool)}, **columns)
    return path


def _feature_logits(values: np.ndarray, grid: np.ndarray, cell_fraction: np.ndarray) -> np.ndarray:
    """(n, k) logit of the smoothed cell fraction of each value's bin (values clipped; NaN → lowest bin)."""
    logits = np.empty(values.shape, np.float64)
    for column in range(values.shape[1]):
        nodes = grid[:, column]
        clipped = np.clip(np.nan_to_num(values[:, column], nan=nodes[0]), nodes[0], nodes[-1])
        bins = np.clip(np.digitize(clipped, nodes, right=True) - 1, 0, cell_fraction.shape[0] - 1)
        fraction = cell_fraction[bins, column]
        logits[:, column] = np.log(fraction + _LOGIT_EPSILON) - np.log(1.0 - fraction + _LOGIT_EPSILON)
    return logits


def fit_classifier(training: TrainingSet, *, feature_names: Sequence[str] | None = None) -> CellClassifier:
    """Fit cindra's classifier on a training set.

    Parameters
    ----------
    training : labelled samples (≥ 100, both classes), e.g. from `load_training_set`.
    feature_names : subset of ``training.feature_names`` to use (None: all), e.g. `SHAPE_FEATURE_NAMES`.
    """
    from sklearn.linear_model import LogisticRegression

    names = tuple(training.feature_names if feature_names is None else feature_names)
    unknown = [name for name in names if name not in training.feature_names]
    if unknown:
        raise ValueError(f"the training set has no feature(s) {', '.join(unknown)}")
    sample_count = training.labels.shape[0]
    if sample_count < MINIMUM_TRAINING_SAMPLES or np.unique(training.labels).size < 2:
        raise ValueError(f"a classifier needs ≥ {MINIMUM_TRAINING_SAMPLES} samples of both classes, got {sample_count}")
    values = training.features[:, [training.feature_names.index(name) for name in names]]
    order = np.argsort(values, axis=0, kind="stable")
    node_ranks = np.linspace(0, sample_count - 1, GRID_NODES).astype(np.int64)
    grid = np.take_along_axis(values, order, axis=0)[node_ranks]
    labels = training.labels.astype(np.float64)
    cell_fraction = np.empty((GRID_NODES - 1, len(names)), np.float64)
    for column in range(len(names)):
        sorted_labels = labels[order[:, column]]
        for node in range(GRID_NODES - 1):
            cell_fraction[node, column] = sorted_labels[node_ranks[node] : node_ranks[node + 1]].mean()
    cell_fraction = gaussian_filter1d(cell_fraction, BIN_SMOOTHING_SIGMA, axis=0)
    model = LogisticRegression(C=_REGULARISATION_C, solver="liblinear", random_state=0)
    model.fit(_feature_logits(values, grid, cell_fraction), training.labels.astype(np.int64))
    return CellClassifier(names, grid, cell_fraction, model.coef_[0].astype(np.float64), float(model.intercept_[0]))


def load_classifier(path: Path | str | None, *, feature_names: Sequence[str] = FEATURE_NAMES) -> CellClassifier:
    """`fit_classifier` on the training set at ``path`` (None: the bundled one)."""
    return fit_classifier(load_training_set(path, feature_names=feature_names))


def cell_probability(features: Mapping[str, np.ndarray], *, classifier: CellClassifier) -> np.ndarray:
    """(n,) float64 probability that each ROI is a cell.

    Parameters
    ----------
    features : (n,) array per name in ``classifier.feature_names`` (other keys are ignored).
    classifier : from `fit_classifier`.
    """
    missing = [name for name in classifier.feature_names if name not in features]
    if missing:
        raise ValueError(f"features lack {', '.join(missing)}")
    columns = [np.asarray(features[name], np.float64).reshape(-1) for name in classifier.feature_names]
    if len({column.shape[0] for column in columns}) != 1:
        raise ValueError(f"feature lengths differ: {[column.shape[0] for column in columns]}")
    values = np.stack(columns, axis=1)
    if values.shape[0] == 0:
        return np.zeros(0, np.float64)
    decision = _feature_logits(values, classifier.grid, classifier.cell_fraction) @ classifier.coefficients + classifier.intercept
    return 1.0 / (1.0 + np.exp(-decision))  # scikit-learn's predict_proba of a binary logistic regression


def classify(features: Mapping[str, np.ndarray], *, classifier: CellClassifier, threshold: float) -> np.ndarray:
    """cindra's ``cell_classification``: (n, 2) float32 ``[probability > threshold, probability]``.

    Parameters
    ----------
    features : (n,) array per feature name of the classifier.
    classifier : from `fit_classifier` / `load_classifier`.
    threshold : probability above which an ROI is a cell (``signal_extraction.classification_threshold``).
    """
    probability = cell_probability(features, classifier=classifier)
    return np.stack([probability > threshold, probability], axis=1).astype(np.float32)

