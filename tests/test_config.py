"""Configuration: YAML round trips, errors that name the field, the template, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cindra_dask.config import (
    MultiRecordingConfiguration,
    SingleRecordingConfiguration,
    configuration_template,
    configuration_to_yaml,
    hashable_sections,
    load_configuration,
    save_configuration,
    section_hash,
)
from cindra_dask.errors import ConfigurationError


@pytest.mark.parametrize("model", [SingleRecordingConfiguration, MultiRecordingConfiguration])
def test_yaml_round_trip_is_identical(tmp_path: Path, model: type) -> None:
    configuration = model.model_validate({"runtime": {"seed": 7}, "signal_extraction": {"minimum_neuropil_pixels": 123}})
    first = save_configuration(configuration, tmp_path / "a.yaml").read_text()
    reloaded = load_configuration(tmp_path / "a.yaml")
    assert reloaded == configuration
    assert configuration_to_yaml(reloaded) == first
    assert reloaded.signal_extraction.minimum_neuropil_pixels == 123


@pytest.mark.parametrize("pipeline", ["single-recording", "multi-recording"])
def test_template_loads_back_to_defaults_and_documents_every_field(tmp_path: Path, pipeline: str) -> None:
    text = configuration_template(pipeline)
    (tmp_path / "t.yaml").write_text(text)
    loaded = load_configuration(tmp_path / "t.yaml")
    model = SingleRecordingConfiguration if pipeline == "single-recording" else MultiRecordingConfiguration
    assert loaded == model()
    data_lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    comment_lines = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comment_lines) >= len(data_lines)  # every field and section has its description


def test_cindra_defaults_are_kept() -> None:
    defaults = SingleRecordingConfiguration()
    assert defaults.main.tau == 0.4
    assert defaults.registration.reference_frame_count == 500
    assert defaults.registration.maximum_offset_fraction == 0.1
    assert defaults.registration.spatial_smoothing_sigma == 1.15
    assert defaults.nonrigid_registration.block_size == (128, 128)
    assert defaults.roi_detection.threshold_scaling == 1.0
    assert defaults.roi_detection.preclassification_threshold == 0.0
    assert defaults.signal_extraction.minimum_neuropil_pixels == 350
    assert defaults.spike_deconvolution.baseline_window == 60.0
    multi = MultiRecordingConfiguration()
    assert multi.roi_tracking.threshold == 0.75
    assert multi.diffeomorphic_registration.final_grid_sampling == 16.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("registration:\n  reference_frame_cont: 10\n", "registration.reference_frame_cont: unknown key"),
        ("registration:\n  reference_frame_count: many\n", "registration.reference_frame_count: Input should be a valid integer"),
        ("registration:\n  maximum_offset_fraction: 1.5\n", "registration.maximum_offset_fraction: Input should be less than or equal to 1"),
        ("nonrigid_registration:\n  block_size: [128]\n", "nonrigid_registration.block_size"),
        ("one_photon_registration:\n  spatial_highpass_window: 41\n", "one_photon_registration.spatial_highpass_window: must be even"),
        ("main:\n  first_channel_functional: false\n", "at least one channel must be functional"),
        ("runtime:\n  max_chunk_memory: lots\n", "runtime.max_chunk_memory"),
        ("pipeline_type: triple\n", "pipeline_type: must be one of"),
    ],
)
def test_invalid_values_name_the_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_configuration(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("main:\n  tau: 0.4\nregistration: [unclosed\n  batch_size: 5\n")
    with pytest.raises(ConfigurationError) as caught:
        load_configuration(path)
    assert "YAML syntax error at line" in str(caught.value)
    assert str(path) in str(caught.value)


def test_overrides_apply_and_are_validated(tmp_path: Path) -> None:
    path = save_configuration(SingleRecordingConfiguration(), tmp_path / "c.yaml")
    configuration = load_configuration(path, overrides=["registration.batch_size=50", "nonrigid_registration.block_size=[64, 64]"])
    assert configuration.registration.batch_size == 50
    assert configuration.nonrigid_registration.block_size == (64, 64)
    with pytest.raises(ConfigurationError, match="registration.batch_size"):
        load_configuration(path, overrides=["registration.batch_size=-3"])
    with pytest.raises(ConfigurationError, match="expected section.field=value"):
        load_configuration(path, overrides=["registration.batch_size"])


def test_section_hash_ignores_other_sections() -> None:
    base = SingleRecordingConfiguration()
    changed_detection = SingleRecordingConfiguration.model_validate({"roi_detection": {"threshold_scaling": 2.0}})
    changed_registration = SingleRecordingConfiguration.model_validate({"registration": {"batch_size": 7}})
    assert section_hash(base, ("registration",)) == section_hash(changed_detection, ("registration",))
    assert section_hash(base, ("registration",)) != section_hash(changed_registration, ("registration",))


def test_fields_added_later_are_hashed_only_away_from_the_value_before_they_existed() -> None:
    """A store written before ``tile_size``, ``maximum_bin_duration``, ``rise_time`` or ``main.indicator`` existed
    hashed its sections without them: at their earlier value they stay out, so such a store resumes."""
    sections = ("main", "roi_detection", "spike_deconvolution")
    dumped = SingleRecordingConfiguration().model_dump(mode="json")
    hashed = hashable_sections(SingleRecordingConfiguration(), sections)
    assert {name: set(dumped[name]) - set(hashed[name]) for name in sections} == {
        "main": {"indicator"},
        "roi_detection": {"maximum_bin_duration", "tile_size"},  # residual_motion_window's default (64) is not its earlier 0: hashed
        "spike_deconvolution": {"rise_time"},
    }
    changed = SingleRecordingConfiguration.model_validate({"roi_detection": {"tile_size": 128, "residual_motion_window": 0}, "main": {"indicator": "GCaMP6f"}})
    hashed = hashable_sections(changed, sections)
    assert hashed["roi_detection"]["tile_size"] == 128 and "residual_motion_window" not in hashed["roi_detection"]
    assert hashed["main"]["indicator"] == "GCaMP6f"
    assert section_hash(changed, (), extra=hashable_sections(changed, ("roi_detection",))) != section_hash(changed, (), extra=hashable_sections(SingleRecordingConfiguration(), ("roi_detection",)))


def test_models_are_frozen() -> None:
    configuration = SingleRecordingConfiguration()
    with pytest.raises(Exception):
        configuration.main.tau = 1.0  # type: ignore[misc]
    assert yaml.safe_load(configuration_to_yaml(configuration))["main"]["tau"] == 0.4


def test_indicator_sets_tau_rise_time_and_nwb_indicator_unless_written() -> None:
    import warnings

    from cindra_dask.config import INDICATOR_KINETICS, Indicator, configuration_from_mapping

    paths = {"data_path": "/data", "output_path": "/out"}
    for indicator, (tau_s, rise_time_s) in INDICATOR_KINETICS.items():
        configuration = configuration_from_mapping({"main": {"indicator": indicator.value}, "file_io": paths}, source="test")
        assert (configuration.main.tau, configuration.spike_deconvolution.rise_time, configuration.metadata.indicator) == (tau_s, rise_time_s, indicator.value)
    assert INDICATOR_KINETICS[Indicator.GCAMP6S] == (1.7, 0.09) and INDICATOR_KINETICS[Indicator.JGCAMP8M] == (0.4, 0.0)
    with pytest.warns(UserWarning, match=r"main.tau 1.2 is used, not main.indicator GCaMP6s's 1.7 s"):
        written = configuration_from_mapping({"main": {"indicator": "GCaMP6s", "tau": 1.2}, "metadata": {"indicator": "GCaMP6s (AAV)"}, "file_io": paths}, source="test")
    assert (written.main.tau, written.spike_deconvolution.rise_time, written.metadata.indicator) == (1.2, 0.09, "GCaMP6s (AAV)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = configuration_from_mapping({"main": {"indicator": "GCaMP6f", "tau": 0.7}, "spike_deconvolution": {"rise_time": 0.06}, "file_io": paths}, source="test")
    assert same.main.tau == 0.7
    plain = configuration_from_mapping({"file_io": paths}, source="test")
    assert (plain.main.tau, plain.spike_deconvolution.rise_time, plain.metadata.indicator) == (0.4, 0.0, None)  # cindra's
    with pytest.raises(ConfigurationError, match=r"main.indicator: Input should be 'OGB-1', 'GCaMP6f'"):
        configuration_from_mapping({"main": {"indicator": "GCaMP9"}, "file_io": paths}, source="test")
