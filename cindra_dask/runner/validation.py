"""What preflight found, as lines for people: the files, frames, planes and channels, the acquisition and where it came from, notes."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from cindra_dask.config import Configuration, SingleRecordingConfiguration, missing_nwb_metadata


class PreflightReport(NamedTuple):
    """What `describe_preflight` found: the store(s) a run writes and one line per finding."""

    store_paths: tuple[Path, ...]
    lines: tuple[str, ...]


def describe_preflight(configuration: Configuration, *, source: str) -> PreflightReport:
    """Preflight ``configuration`` (`cindra_dask.runner.context.preflight` or its multi-recording
    twin), writing nothing; ``source`` (the file) starts the first line. Raises the preflight's errors."""
    from cindra_dask.io.acquisition import FILE_METADATA_KINDS
    from cindra_dask.io.acquisition import summary as acquisition_summary
    from cindra_dask.runner.context import preflight

    if not isinstance(configuration, SingleRecordingConfiguration):
        from cindra_dask.runner.multi_context import preflight_multi_recording

        multi = preflight_multi_recording(configuration)
        line = f"{source}: multi-recording configuration is valid; {len(multi.recordings)} recordings are ready for discover and extract"
        return PreflightReport(tuple(Path(recording.store.path) for recording in multi.recordings), (line,))
    context = preflight(configuration)
    plan = context.plan
    requested = configuration.file_io.input_format.value
    dataset = getattr(plan.files[0], "dataset", None)
    found = f"{len(plan.files)} {plan.reader.label} files" + (f" (dataset '{dataset}')" if dataset else "")
    lines = [
        f"{source}: OK — {found} (input_format {requested}{': found ' + plan.reader.input_format if requested == 'auto' else ''}), {plan.frames_per_plane} frames × {len(plan.virtual_planes)} planes × {plan.channel_number} channels "
        f"of {plan.files[0].page_shape[0]}×{plan.frame_width} {plan.dtype}; chunks of {plan.chunk_frames} frames; store {context.store.path}"
    ]
    record = context.acquisition_record
    verb = "inferred from" if record.used.kind in FILE_METADATA_KINDS else "from"
    lines.append(f"acquisition: {acquisition_summary(record.parameters)} — {verb} {record.used.describe()}")
    lines += [f"note: {note}" for note in context.notes]
    missing = missing_nwb_metadata(configuration.metadata)
    if missing:
        lines.append(f"note: {', '.join(missing)} not set; processing does not need them, `cindra-dask export nwb` does (set them in the metadata section)")
    return PreflightReport((Path(context.store.path),), tuple(lines))
