"""The cell classifier (cindra §3.5): fitting against known class structure, the bundled training set,
user classifier files and clear errors for malformed ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import roc_auc_score

from cindra_dask.detection.classify import (
    FEATURE_NAMES,
    GRID_NODES,
    LABEL_KEY,
    SHAPE_FEATURE_NAMES,
    TrainingSet,
    bundled_classifier_path,
    cell_probability,
    classify,
    fit_classifier,
    load_classifier,
    load_training_set,
    save_training_set,
)
from cindra_dask.extraction.baseline import neuropil_corrected_skewness
from cindra_dask.errors import InputError


def _synthetic_training(rng: np.random.Generator, count: int = 1000) -> TrainingSet:
    """Cells: ≈ unit size, compact, skewed; non-cells: any size, elongated, less skewed."""
    labels = rng.random(count) < 0.5
    size = np.where(labels, rng.normal(1.0, 0.15, count), rng.lognormal(-0.7, 0.8, count))
    compactness = np.where(labels, 1.0 + np.abs(rng.normal(0, 0.03, count)), 1.0 + np.abs(rng.normal(0.3, 0.25, count)))
    skewness = np.where(labels, rng.normal(1.6, 0.5, count), rng.normal(0.6, 0.6, count))
    return TrainingSet(labels, np.stack([size, compactness, skewness], axis=1), FEATURE_NAMES)


def _columns(training: TrainingSet) -> dict[str, np.ndarray]:
    return dict(zip(training.feature_names, training.features.T))


def test_fit_builds_cindras_rank_grid_and_separates_held_out_samples() -> None:
    rng = np.random.default_rng(0)
    training, held_out = _synthetic_training(rng), _synthetic_training(rng)
    classifier = fit_classifier(training)
    assert classifier.grid.shape == (GRID_NODES, 3) and classifier.cell_fraction.shape == (GRID_NODES - 1, 3)
    np.testing.assert_array_equal(classifier.grid[[0, -1]], [training.features.min(axis=0), training.features.max(axis=0)])

    # the smoothed fraction of cells between rank nodes, recomputed by hand for compactness
    order = np.argsort(training.features[:, 1], kind="stable")
    ranks = np.linspace(0, 999, GRID_NODES).astype(int)
    fractions = [training.labels[order][ranks[node] : ranks[node + 1]].mean() for node in range(GRID_NODES - 1)]
    np.testing.assert_allclose(classifier.cell_fraction[:, 1], gaussian_filter1d(np.array(fractions), 2.0), atol=1e-12)
    assert classifier.cell_fraction[:10, 1].mean() > 0.9 > 0.1 > classifier.cell_fraction[-30:, 1].mean()

    probability = cell_probability(_columns(held_out), classifier=classifier)
    assert roc_auc_score(held_out.labels, probability) > 0.97
    result = classify(_columns(held_out), classifier=classifier, threshold=0.7)
    assert result.dtype == np.float32 and result.shape == (1000, 2)
    np.testing.assert_array_equal(result[:, 0], (probability > 0.7).astype(np.float32))
    np.testing.assert_allclose(result[:, 1], probability, rtol=1e-6)
    assert np.mean(result[:, 0] == held_out.labels) > 0.9


def test_out_of_range_and_nan_features_use_the_edge_bins() -> None:
    classifier = fit_classifier(_synthetic_training(np.random.default_rng(1)))
    features = {"normalized_pixel_count": np.array([1.0, 1.0, 1.0]), "compactness": np.array([1.0, 1.0, 1.0]), "skewness": np.array([np.nan, -50.0, 50.0])}
    probability = cell_probability(features, classifier=classifier)
    assert np.all(np.isfinite(probability))
    assert probability[0] == pytest.approx(probability[1])  # NaN → lowest bin, as a value below the grid
    assert probability[2] > probability[1]
    assert classify({name: np.zeros(0) for name in FEATURE_NAMES}, classifier=classifier, threshold=0.5).shape == (0, 2)


def test_shape_only_classifier_ignores_skewness() -> None:
    training = _synthetic_training(np.random.default_rng(2))
    shape_classifier = fit_classifier(training, feature_names=SHAPE_FEATURE_NAMES)
    assert shape_classifier.feature_names == SHAPE_FEATURE_NAMES and shape_classifier.grid.shape == (GRID_NODES, 2)
    compact = {"normalized_pixel_count": np.array([1.0, 0.2]), "compactness": np.array([1.0, 1.8])}
    probability = cell_probability(compact, classifier=shape_classifier)
    assert probability[0] > 0.9 and probability[1] < 0.1


def test_bundled_training_set_is_small_labelled_and_separates_simulated_cells() -> None:
    path = bundled_classifier_path()
    assert path.is_file() and path.stat().st_size < 300_000
    training = load_training_set(None)
    assert training.features.shape[0] >= 1000 and 0.3 < training.labels.mean() < 0.8
    cells, others = training.features[training.labels], training.features[~training.labels]
    assert np.median(cells[:, 1]) < 1.05 < np.median(others[:, 1])  # somata are compact
    assert np.median(cells[:, 2]) > np.median(others[:, 2])  # and their traces skewed
    # 2-fold cross-validation on the bundled data (generalisation to simulated recordings is in test_detection_graph)
    halves = np.arange(training.labels.size) % 2 == 0
    for train, test in ((halves, ~halves), (~halves, halves)):
        classifier = fit_classifier(TrainingSet(training.labels[train], training.features[train], FEATURE_NAMES))
        probability = cell_probability(dict(zip(FEATURE_NAMES, training.features[test].T)), classifier=classifier)
        assert roc_auc_score(training.labels[test], probability) > 0.97


def test_user_classifier_file_is_accepted(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    count = 400
    # a user who calls every ROI with skewness > 1 a cell, regardless of shape
    skewness = rng.normal(1.0, 1.0, count)
    path = tmp_path / "my_classifier.npz"
    np.savez(path, training_labels=(skewness > 1.0).astype(np.float64), normalized_pixel_count=rng.lognormal(0, 0.5, count), compactness=1 + rng.exponential(0.2, count), skewness=skewness, note=np.array("curated in the GUI"))
    classifier = load_classifier(path)
    features = {"normalized_pixel_count": np.ones(2), "compactness": np.ones(2), "skewness": np.array([3.0, -1.0])}
    result = classify(features, classifier=classifier, threshold=0.5)
    np.testing.assert_array_equal(result[:, 0], [1.0, 0.0])

    saved = save_training_set(tmp_path / "round_trip.npz", load_training_set(path))
    again = load_training_set(saved)
    np.testing.assert_allclose(again.features, load_training_set(path).features, rtol=1e-6)
    np.testing.assert_array_equal(again.labels, skewness > 1.0)


def _write(path: Path, **columns: np.ndarray) -> Path:
    np.savez(path, **columns)
    return path


def _valid_columns(count: int = 150) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    return {LABEL_KEY: (np.arange(count) % 2).astype(bool), **{name: rng.normal(size=count) for name in FEATURE_NAMES}}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_file", "not found"),
        ("not_npz", "cannot be read"),
        ("missing_key", "missing key.*skewness"),
        ("few_samples", "99 samples; at least 100"),
        ("labels_not_binary", "only 0/1"),
        ("single_class", "single class"),
        ("length_mismatch", "'compactness' has 140 samples"),
        ("nan_feature", "'skewness' holds NaN"),
        ("two_dimensional", "'normalized_pixel_count' must be a 1-D numeric array"),
    ],
)
def test_malformed_classifier_file_raises_an_error_naming_it(case: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / f"{case}.npz"
    columns = _valid_columns()
    if case == "not_npz":
        path.write_text("training_labels,compactness\n1,1.0\n")
    elif case == "missing_key":
        del columns["skewness"]
    elif case == "few_samples":
        columns = _valid_columns(99)
    elif case == "labels_not_binary":
        columns[LABEL_KEY] = np.arange(150) % 3
    elif case == "single_class":
        columns[LABEL_KEY] = np.ones(150, bool)
    elif case == "length_mismatch":
        columns["compactness"] = columns["compactness"][:140]
    elif case == "nan_feature":
        columns["skewness"][5] = np.nan
    elif case == "two_dimensional":
        columns["normalized_pixel_count"] = columns["normalized_pixel_count"].reshape(75, 2)
    if case not in ("missing_file", "not_npz"):
        _write(path, **columns)
    with pytest.raises(InputError, match=message) as raised:
        load_classifier(path)
    assert all(str(path) in problem for problem in raised.value.problems)


def test_skewness_of_the_neuropil_corrected_trace() -> None:
    rng = np.random.default_rng(5)
    neuropil = rng.normal(100, 5, size=(2, 3000))
    transients = np.zeros(3000)
    transients[rng.choice(3000, 60, replace=False)] = 50
    cell = np.stack([0.7 * neuropil[0] + transients + 20, 0.7 * neuropil[1] + rng.normal(0, 1, 3000)])
    skewness = neuropil_corrected_skewness(cell, neuropil, neuropil_coefficient=0.7)
    assert skewness.dtype == np.float32 and skewness[0] > 5 and abs(skewness[1]) < 0.2
