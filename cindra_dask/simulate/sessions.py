"""Several sessions of one field of view: shared sources with turnover, each session seen through its
own smooth static deformation, with its own activity, motion and noise."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cindra_dask.simulate.fields import build_knot_grid, evaluate_knots, lattice
from cindra_dask.simulate.files import write_recording
from cindra_dask.simulate.parameters import SESSION_STREAM, SimulatedSession, SimulationParameters
from cindra_dask.simulate.scene import Deformation, build_atlas
from cindra_dask.simulate.truth import session_truth


def _turnover_sets(rng: np.random.Generator, count: int, *, session_count: int, turnover_count: int, first_index: int) -> list[np.ndarray]:
    """Per session, the atlas indices present: each session replaces ``turnover_count`` of the previous session's."""
    current = np.arange(first_index, first_index + count)
    next_new = first_index + count
    sessions = [current]
    for _ in range(1, session_count):
        dropped = rng.choice(current, turnover_count, replace=False)
        current = np.sort(np.concatenate([np.setdiff1d(current, dropped), np.arange(next_new, next_new + turnover_count)]))
        next_new += turnover_count
        sessions.append(current)
    return sessions


def simulate_sessions(
    parameters: SimulationParameters,
    *,
    session_count: int = 4,
    deformation_px: float = 4.0,
    turnover_fraction: float = 0.2,
    deformation_spacing_px: float = 96.0,
    seed: int | None = None,
) -> list[SimulatedSession]:
    """Several sessions of one field of view.

    Each session sees the shared sources through its own smooth static deformation (largest
    |component| over the frame = ``deformation_px``, a translation included; stored as
    ``session_deformation``) and has its own
    activity, motion and noise (its parameters carry a derived seed). Between consecutive sessions
    ``round(turnover_fraction · count)`` somata (and as many non-cells) disappear and as many new
    ones appear; ``cell_identity`` names each source across sessions.
    """
    if session_count < 1 or not 0 <= turnover_fraction <= 1 or deformation_px < 0:
        raise ValueError("need session_count ≥ 1, 0 ≤ turnover_fraction ≤ 1 and deformation_px ≥ 0")
    seed = parameters.seed if seed is None else seed
    cell_turnover = int(round(turnover_fraction * parameters.cell_count))
    non_cell_turnover = int(round(turnover_fraction * parameters.non_cell_count))
    cell_pool = parameters.cell_count + (session_count - 1) * cell_turnover
    non_cell_pool = parameters.non_cell_count + (session_count - 1) * non_cell_turnover
    extra_margin = int(math.ceil(deformation_px)) + 2
    atlas = build_atlas(parameters, seed=seed, cell_pool=cell_pool, non_cell_pool=non_cell_pool, extra_margin_px=extra_margin)
    rng = np.random.default_rng([seed, SESSION_STREAM])
    per_plane = []
    for _ in range(parameters.plane_count):
        cells = _turnover_sets(rng, parameters.cell_count, session_count=session_count, turnover_count=cell_turnover, first_index=0)
        non_cells = _turnover_sets(rng, parameters.non_cell_count, session_count=session_count, turnover_count=non_cell_turnover, first_index=cell_pool)
        per_plane.append([np.concatenate([c, n]) for c, n in zip(cells, non_cells)])
    grid = build_knot_grid(parameters.frame_height, parameters.frame_width, deformation_spacing_px)
    lattice_rows, lattice_columns = lattice(parameters.frame_height), lattice(parameters.frame_width)
    sessions = []
    for session in range(session_count):
        values = rng.standard_normal((2, len(grid.knots_y), len(grid.knots_x)))
        values *= deformation_px / max(float(np.abs(evaluate_knots(values, grid, lattice_rows, lattice_columns)).max()), 1e-12)
        session_seed = int(np.random.SeedSequence([seed, session]).generate_state(1)[0])
        session_parameters = SimulationParameters.model_validate({**parameters.model_dump(), "seed": session_seed})
        deformation = Deformation(grid, values, float(deformation_px))
        present = [per_plane[plane][session] for plane in range(parameters.plane_count)]
        sessions.append(SimulatedSession(session_parameters, session_truth(session_parameters, atlas, present, deformation)))
    return sessions


def write_sessions(parameters: SimulationParameters, directory: Path | str, **session_options: float | int | None) -> list[Path]:
    """``simulate_sessions`` then ``write_recording`` of each into ``directory/session_000``, …"""
    directory = Path(directory)
    return [
        write_recording(session.parameters, directory / f"session_{index:03d}", truth=session.truth)
        for index, session in enumerate(simulate_sessions(parameters, **session_options))  # type: ignore[arg-type]
    ]
