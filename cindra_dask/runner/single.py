"""The single-recording pipeline: its step table, hashes and run (``ingest`` → ``process`` → ``combine``).

Each step's hash chains the hash of the step before it (per plane), so a change reruns that step
and every step after it; ``force`` (or cindra's ``repeat_*`` flags) reruns regardless. Nothing is
written before `cindra_dask.runner.context.preflight` has checked the configuration, the inputs and
the output location; the store is locked for the whole run; a full disk ends it with one line
(`cindra_dask.runner.loop.disk_full_stops_the_run`) and the rerun resumes.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from cindra_dask.config import Configuration, SingleRecordingConfiguration, configuration_to_yaml, hashable_sections, section_hash
from cindra_dask.errors import ConfigurationError
from cindra_dask.runner.context import RecordingContext, preflight, processed_planes
from cindra_dask.runner.events import RunEvents
from cindra_dask.runner.execution import Executor
from cindra_dask.runner.loop import RunReport, Unit, disk_full_stops_the_run, refresh_manifest, run_units
from cindra_dask.runner.plans import StepPlan
from cindra_dask.store import CNMF, COMBINED, DETECTION, EXTRACTION, MINISCOPE, RAW, REGISTERED, REGISTRATION, ROIS, RecordingStore, plane_path, stage_path

SINGLE_RECORDING_PHASES = ("ingest", "process", "combine")


class Step(NamedTuple):
    """A resumable unit of the single-recording pipeline (one record in the store per plane if per-plane).

    Attributes
    ----------
    name : step name; its record key is ``name`` or ``name/plane_k``.
    phase : the phase it belongs to (``ingest``, ``process``, ``combine``).
    sections : configuration sections its hash covers (chained with the step before it).
    per_plane : runs once per processed plane.
    plan : ``"module:function"`` of its plan, ``function(context, *, plane) -> StepPlan`` (imported when it runs).
    force_flag : a ``section.field`` boolean that forces a rerun (cindra's ``repeat_*``).
    source_extraction : the ``source_extraction.method`` values it runs for (None: every method); steps of
        other methods are neither run nor chained into the hashes.
    outputs : the groups it writes (``plane_k/<group>`` for ingest, of every plane, and for the
        per-plane steps; extraction also writes ``rois/skewness`` into detection's ``rois``).
    enabled_flag : a ``section.field`` boolean without which the step is neither run nor chained into the hashes (None: always).
    """

    name: str
    phase: str
    sections: tuple[str, ...]
    per_plane: bool
    plan: str
    force_flag: str | None
    outputs: tuple[str, ...]
    source_extraction: tuple[str, ...] | None = None
    enabled_flag: str | None = None

    def key(self, plane: int | None) -> str:
        """Record key of this step (for ``plane`` when per-plane)."""
        return f"{self.name}/plane_{plane}" if self.per_plane else self.name

    def output_paths(self, plane: int | None, *, planes: Sequence[int]) -> tuple[str, ...]:
        """The groups this step writes (for ``plane`` when per-plane; ingest writes every plane's in ``planes``)."""
        if self.per_plane:
            return tuple(stage_path(plane, group) for group in self.outputs)
        if self.name == "ingest":
            return tuple(stage_path(index, group) for index in planes for group in self.outputs)
        return self.outputs

    def plan_function(self) -> Callable[..., StepPlan]:
        """The plan function (importing its stage module)."""
        module, function = self.plan.split(":")
        return getattr(importlib.import_module(module), function)


SINGLE_RECORDING_STEPS = (
    Step("ingest", "ingest", (), False, "cindra_dask.io.ingest:plan_ingest_step", "file_io.repeat_binarization", (RAW,)),
    Step(
        "registration",
        "process",
        ("main", "registration", "one_photon_registration", "nonrigid_registration"),
        True,
        "cindra_dask.registration.graph:plan_registration_step",
        "registration.repeat_registration",
        (REGISTERED, REGISTRATION),
    ),
    Step("detection", "process", ("main", "roi_detection", "nonrigid_registration"), True, "cindra_dask.detection.graph:plan_detection_step", None, (DETECTION, ROIS), ("sparse",)),
    Step("cnmf", "process", ("main", "source_extraction", "roi_detection"), True, "cindra_dask.cnmf.graph:plan_cnmf_step", None, (DETECTION, ROIS, CNMF), ("cnmf", "cnmf_e")),
    Step("extraction", "process", ("main", "signal_extraction", "spike_deconvolution"), True, "cindra_dask.extraction.graph:plan_extraction_step", None, (EXTRACTION, f"{ROIS}/skewness")),
    Step("miniscope", "process", ("main", "miniscope_analysis"), True, "cindra_dask.miniscope.graph:plan_miniscope_step", None, (MINISCOPE,), ("cnmf_e",), "miniscope_analysis.enabled"),
    Step("combine", "combine", (), False, "cindra_dask.combine:plan_combine_step", None, (COMBINED,)),
)

DETECTION_DEPENDENT_STEPS = ("detection", "cnmf", "extraction", "miniscope")
"""Steps ``roi_detection.enabled = False`` skips (cindra: "skips detection and extraction for the plane")."""


def method_steps(configuration: Configuration) -> tuple[Step, ...]:
    """The steps of `SINGLE_RECORDING_STEPS` that run for the configured ``source_extraction.method`` (and whose ``enabled_flag`` is set), in order."""
    method = configuration.source_extraction.method.value
    return tuple(
        step
        for step in SINGLE_RECORDING_STEPS
        if (step.source_extraction is None or method in step.source_extraction) and (step.enabled_flag is None or _forced(configuration, step.enabled_flag))
    )


def ingest_hash(context: RecordingContext) -> str:
    """Identity of the ingest: acquisition, input files (names, sizes, times), chunking, the crop (``file_io.crop_coords``) and, for other formats than TIFF, the format and the dataset read (none for Bruker TIFFs)."""
    files = [(Path(info.path).name, status.st_size, status.st_mtime_ns) for info in context.plan.files for status in (os.stat(info.path),)]
    extra = {"acquisition": context.acquisition.model_dump(mode="json"), "files": files, "chunk_frames": context.plan.chunk_frames}
    if context.configuration.file_io.crop_coords is not None:  # hashes without a crop stay those of stores written before it existed
        extra["crop_coords"] = list(context.configuration.file_io.crop_coords)
    if context.plan.reader.input_format != "tiff":  # TIFF hashes stay those of stores written before other formats existed
        extra["input"] = {"format": context.plan.reader.input_format, "datasets": sorted({getattr(info, "dataset", "") for info in context.plan.files})}
    return section_hash(context.configuration, (), extra=extra)


def step_hashes(context: RecordingContext) -> dict[str, str]:
    """Every step's hash: ingest's, then chained per plane, and combine's over all planes."""
    configuration = context.configuration
    hashes = {"ingest": ingest_hash(context)}
    plane_tails = []
    for plane in processed_planes(context):
        previous = hashes["ingest"]
        for step in method_steps(configuration):
            if step.per_plane:
                previous = section_hash(configuration, (), extra={"previous": previous, **hashable_sections(configuration, step.sections)})
                hashes[step.key(plane)] = previous
        plane_tails.append(previous)
    hashes["combine"] = section_hash(configuration, (), extra={"previous": plane_tails})
    return hashes


def _forced(configuration: Configuration, dotted: str | None) -> bool:
    if dotted is None:
        return False
    section, field = dotted.split(".")
    return bool(getattr(getattr(configuration, section), field))


def _selected_steps(context: RecordingContext, phases: Sequence[str] | None, target_plane: int | None, events: RunEvents) -> list[tuple[Step, int | None]]:
    """(step, plane) pairs to consider, in execution order."""
    units: list[tuple[Step, int | None]] = []
    planes = [plane for plane in processed_planes(context) if target_plane is None or plane == target_plane]
    for phase in SINGLE_RECORDING_PHASES:
        if phases and phase not in phases:
            continue
        steps = [step for step in method_steps(context.configuration) if step.phase == phase]
        if steps[0].per_plane:
            if not context.configuration.roi_detection.enabled:
                events.message("roi_detection.enabled is false: detection and extraction skipped (registration only)")
                steps = [step for step in steps if step.name not in DETECTION_DEPENDENT_STEPS]
            units += [(step, plane) for plane in planes for step in steps]
        elif phase == "combine" and target_plane is not None:
            events.message("phase 'combine': skipped because target_plane limits the run to one plane")
        else:
            units += [(step, None) for step in steps]
    return units


def _invalidated_keys(step: Step, plane: int | None, hashes: dict[str, str]) -> tuple[str, ...]:
    """Record keys whose outputs depend on ``step`` (itself included), and those of earlier steps that write
    the same groups (sparse detection's record, when CNMF rewrites its ROIs)."""
    if step.name == "ingest":
        return tuple(hashes)
    position = [candidate.name for candidate in SINGLE_RECORDING_STEPS].index(step.name)
    later = [candidate for candidate in SINGLE_RECORDING_STEPS[position:] if candidate.per_plane]
    rivals = [other for other in SINGLE_RECORDING_STEPS[:position] if other.per_plane and set(other.outputs) & set(step.outputs)]
    return (*(candidate.key(plane) for candidate in (*later, *rivals)), "combine")


def _stale_outputs(step: Step, plane: int | None, planes: Sequence[int]) -> tuple[str, ...]:
    """Groups removed before ``step`` runs, each once: its own outputs and those of every step after it
    (per-plane steps: of the same plane, whichever source extraction wrote them; ``combine``), as
    `_invalidated_keys` forgets their records."""
    if step.name == "ingest":
        return (*(plane_path(index) for index in planes), COMBINED)
    position = [candidate.name for candidate in SINGLE_RECORDING_STEPS].index(step.name)
    later = [candidate for candidate in SINGLE_RECORDING_STEPS[position:] if candidate.per_plane or candidate.name == "combine"]
    return tuple(dict.fromkeys(path for candidate in later for path in candidate.output_paths(plane, planes=planes)))


def _output_problems(step: Step, plane: int | None, planes: Sequence[int]) -> Callable[[RecordingStore], list[str]]:
    """The check of a complete step's outputs (`cindra_dask.manifest.output_problems`): the groups it
    writes, less the other steps' outputs nested in them and the intermediates removed on purpose
    (`cindra-dask clean`) after it finished."""
    own = step.output_paths(plane, planes=planes)
    others = [other for other in SINGLE_RECORDING_STEPS if other.name != step.name and (plane is not None or not other.per_plane)]
    nested = [path for other in others for path in other.output_paths(plane, planes=planes) if any(path.startswith(group + "/") for group in own)]

    def problems(store: RecordingStore) -> list[str]:
        from cindra_dask.manifest import output_problems

        record = store.phase_record(step.key(plane))
        finished = record.finished if record is not None else None
        cleaned = [group for group, when in store.attributes().get("removed_intermediates", {}).items() if finished is None or str(when) >= finished]
        excused = [stage_path(index, group) for index in planes for group in cleaned]
        return output_problems(store, own, finished=finished, excluded=(*nested, *excused))

    return problems


def run_single_recording(
    configuration: SingleRecordingConfiguration,
    *,
    client: Any | None = None,
    phases: Sequence[str] | None = None,
    target_plane: int | None = None,
    force: bool = False,
    events: RunEvents | None = None,
) -> RunReport:
    """Run the single-recording steps in order, skipping complete ones whose hash matches.

    Parameters
    ----------
    configuration : validated configuration.
    client : a ``distributed.Client``; None starts the cluster of ``configuration.cluster``.
    phases : subset of ``ingest``, ``process``, ``combine`` (None: all, in order).
    target_plane : restrict the per-plane ``process`` steps to this plane (``ingest`` always
        converts every plane, as cindra's binarization does; ``combine`` is skipped).
    force : rerun the selected steps even if complete.
    events : where messages and progress go (default: the ``cindra_dask`` logger).
    """
    unknown = [name for name in phases or () if name not in SINGLE_RECORDING_PHASES]
    if unknown:
        raise ConfigurationError(f"unknown phase {', '.join(unknown)}; single-recording phases are {', '.join(SINGLE_RECORDING_PHASES)}")
    context = preflight(configuration, phases=phases)
    plane_count = len(context.plan.virtual_planes)
    if target_plane is not None and not 0 <= target_plane < plane_count:
        raise ConfigurationError(f"target_plane {target_plane}: the recording has planes 0..{plane_count - 1}")
    executor = Executor(configuration.cluster, client=client, events=events)
    for note in context.notes:
        executor.events.message(f"note: {note}")
    configuration = context.configuration
    store = context.store
    with disk_full_stops_the_run(store.path), store.locked():
        try:
            hashes = step_hashes(context)
            all_planes = [plane.index for plane in context.plan.virtual_planes]
            units = [
                Unit(
                    key=step.key(plane),
                    stores=(store,),
                    config_hash=hashes[step.key(plane)],
                    forced=force or _forced(configuration, step.force_flag),
                    plan=lambda stores, step=step, plane=plane: step.plan_function()(context, plane=plane),
                    invalidates=_invalidated_keys(step, plane, hashes),
                    outcome_names=(step.key(plane),),
                    per_store=False,
                    summary=lambda result, duration_s, key=step.key(plane): f"step '{key}': done in {duration_s:.1f} s",
                    stale_outputs=_stale_outputs(step, plane, all_planes),
                    output_problems=_output_problems(step, plane, all_planes),
                )
                for step, plane in _selected_steps(context, phases, target_plane, executor.events)
            ]
            outcomes = run_units(units, executor)
            migrated = []
            ran = any(outcome.state == "ran" for outcome in outcomes)
            if store.exists and ran:  # the configuration of the last run that wrote (its method, which `status` lists; exports read it)
                store.update_attributes(configuration=configuration_to_yaml(configuration))
            if store.exists:  # also when every step was skipped: stores written before every array had dims get them; the OME metadata takes the run's pixel size
                migrated = store.add_missing_dimension_names()
                store.write_ome_metadata(frame_interval_s=1.0 / context.acquisition.plane_frame_rate_hz, pixel_size_um=configuration.metadata.pixel_size_um)
            refresh_manifest(store, ran=bool(migrated) or ran)
        finally:
            executor.close()
    return RunReport(store.path, tuple(outcomes))
