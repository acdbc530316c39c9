"""Ground-truth simulator: two-photon (or one-photon) recordings with everything planted known.

The project's test bench. Every later stage is tested by recovering what this package plants:
footprints (detection), rigid and nonrigid motion (registration), the odd-line offset
(bidirectional correction), calcium and spikes (extraction, OASIS), red labels
(colocalization), per-session deformations and cell identities (multi-recording tracking).

Modules: ``parameters`` (`SimulationParameters`, `GroundTruth` and the other records), ``fields``
(smooth random signals and knot interpolation), ``scene`` (source shapes, footprints, the atlas of
static images), ``activity`` (spikes, calcium, neuropil activity; real segments from ``bank``),
``motion`` (rigid, nonrigid, bad frames), ``truth`` (one recording's ground truth), ``render``
(frames from the truth), ``files`` (TIFFs, parameters JSON, ``ground_truth.npz``), ``sessions``
(several sessions of one field of view), ``miniscope`` (the one-photon preset; UCLA Miniscope AVI
folders). Everything a caller needs is importable from here.

Scene model (per plane, photons per pixel per frame; ``t`` = plane frame index)::

    scene_t = bleach_t · ( Σ_k footprint_k · baseline_k · (1 + calcium_k(t))
                           + Σ_m neuropil_m · (1 + neuropil_activity_m(t)) + background )
    ideal_t(y, x) = scene_t(y − Dy_t(y, x), x − Dx_t(y, x)),   D_t = rigid_t + nonrigid_t(y, x)
    raw_t(y, x)   = illumination(y, x) · (ideal_t(y, x + b·[y odd]) + bleach_t · sensor_background(y, x))
                    (b = bidirectional offset; the sensor background is fixed to the camera: 1P glow)
    pixel         = (Poisson(raw_t) + Normal(0, read_noise)) / photons_per_gray_level, rounded and clipped to the dtype

The scene is rendered on a canvas padded by ``scene_padding_px`` on every side, so motion brings
real (neuropil, background) content into view; resampling is cubic-spline
(``scipy.ndimage.map_coordinates(order=3, mode="nearest")``). Channel 2 (structural, red) is
``bleach_t · (Σ_k footprint_k · red_k + red background + red_bleedthrough · green scene_t)``,
moved by the same motion. Blank bad frames show the (bleached) background only; shifted bad
frames carry a rigid offset of at least 3× ``rigid_shift_px`` (and ≥ 15 % of the frame side),
beyond cindra's registration limit. Shot noise of frame ``t``, plane ``p``, channel ``c`` comes
from ``numpy.random.default_rng([seed, 4, p, c, t])``, so the bytes do not depend on chunking.
Plane p's frame t is taken at time (t·P + p) / frame_rate_hz: all planes share one motion trace.
``write_recording`` streams (memory grows with sources × frames for the truth, not with pixels);
2000 frames of 256² render and write in about 20 s on one core.

Sign conventions (CONVENTIONS.md): ``rigid_offsets[p, t] = (dy, dx)`` means frame t shows the
reference scene moved by +dy rows and +dx columns: frame_t(y, x) ≈ reference(y − dy, x − dx).
The nonrigid field uses the same sign and is defined on frame (output) coordinates.
``bidirectional_offset_px = b`` means odd rows (1, 3, 5, …) of every raw frame show the ideal row
moved left by b columns (raw[odd, x] = ideal[odd, x + b]); cindra's estimator returns +b and its
correction (odd rows moved right by b) undoes it. A session's ``session_deformation`` D is the
backward map from the shared field of view: session_image(y, x) = shared_image(y − Dy, x − Dx).

``ground_truth.npz`` keys (``save_ground_truth``; n sources over all planes, P planes, T frames
per plane, H × W frames, Hp = H + 2·pad, Wp = W + 2·pad, M neuropil modes, gy × gx knots)::

    parameters_json          str        the SimulationParameters as JSON
    footprint_pixel_offsets  (n+1,) i8  source k owns entries [offsets[k], offsets[k+1]) below
    footprint_ypix           (Σ,) i4    row of each footprint pixel (frame coordinates)
    footprint_xpix           (Σ,) i4    column of each footprint pixel
    footprint_weights        (Σ,) f4    relative brightness, unit mean over each source's pixels
    source_baseline_photons  (n,) f4    photons per footprint pixel at rest (× weight)
    red_photons              (n,) f4    static channel-2 photons per pixel (× weight); 0 if not red
    plane_index              (n,) i4    plane of each source
    is_cell                  (n,) bool  soma (True) or dendrite-like / irregular source (False)
    is_red                   (n,) bool  labelled in the structural channel
    centroids                (n, 2) f4  weighted footprint centroid (y, x), px
    cell_identity            (n,) i8    stable source identity shared across sessions
    spikes                   (n, T) f4  spike count per frame
    calcium                  (n, T) f4  dF/F: AR(1) of the spikes, decay exp(−1/(tau_s·fs_plane));
                                        with ``activity_bank_path``, each spiking source's real dF/F
                                        segment (floored at −0.9) and ``spikes`` its real spike counts
    active                   (n,) bool  has at least one spike
    neuropil_images          (P, M, Hp, Wp) f4  neuropil modes at rest, photons (padded canvas)
    neuropil_activity        (P, M, T) f4       multiplicative activity of each mode (dF/F)
    background_images        (P, C, Hp, Wp) f4  static background per channel, photons
    sensor_background        (P, C, H, W) f4    photons fixed to the sensor, not moved (1P glow; 0 in 2P)
    illumination             (H, W) f4          static multiplicative field after motion (1P vignetting)
    bleaching                (P, T) f4          multiplicative bleaching factor, 1 at t = 0
    rigid_offsets            (P, T, 2) f4       (dy, dx) px, sign as above (bad frames included)
    nonrigid_grid            (P, T, 2, gy, gx) f4  knot values of the nonrigid field, px
    nonrigid_knots_y         (gy,) f4, nonrigid_knots_x (gx,) f4   knot positions, px
    nonrigid_sigma_px        (2,) f4            Gaussian kernel widths (y, x) of the knot interpolation
    bad_frames               (P, T) bool        blanked or far-shifted frames
    blank_frames             (P, T) bool        the blanked subset
    session_deformation      (2, H, W) f4       (dy, dx) backward map from the shared space (0 if single)
    bidirectional_offset_px  int;  tau_s, frame_rate_hz (volume rate as cindra's frame_rate) float;
    scene_padding_px         int
"""

from __future__ import annotations

from cindra_dask.simulate.activity import LOWEST_PLANTED_DFF
from cindra_dask.simulate.files import ACQUISITION_FILE_NAME, GROUND_TRUTH_FILE_NAME, SIMULATED_TIFF_PATTERN, acquisition_parameters, file_page_counts, load_ground_truth, prepare_output_directory, save_ground_truth, write_recording
from cindra_dask.simulate.miniscope import ONE_PHOTON_PRESET, miniscope_file_name, one_photon_parameters, write_miniscope_recording
from cindra_dask.simulate.motion import nonrigid_displacement
from cindra_dask.simulate.parameters import NEUROPIL_MODE_COUNT, GroundTruth, SimulatedRecording, SimulatedSession, SimulationParameters
from cindra_dask.simulate.render import render_frames, simulate_recording, to_output_dtype
from cindra_dask.simulate.sessions import simulate_sessions, write_sessions
from cindra_dask.simulate.truth import generate_ground_truth

__all__ = [
    "ACQUISITION_FILE_NAME",
    "GROUND_TRUTH_FILE_NAME",
    "GroundTruth",
    "LOWEST_PLANTED_DFF",
    "NEUROPIL_MODE_COUNT",
    "ONE_PHOTON_PRESET",
    "SIMULATED_TIFF_PATTERN",
    "SimulatedRecording",
    "SimulatedSession",
    "SimulationParameters",
    "acquisition_parameters",
    "file_page_counts",
    "generate_ground_truth",
    "load_ground_truth",
    "miniscope_file_name",
    "nonrigid_displacement",
    "one_photon_parameters",
    "prepare_output_directory",
    "render_frames",
    "save_ground_truth",
    "simulate_recording",
    "simulate_sessions",
    "to_output_dtype",
    "write_miniscope_recording",
    "write_recording",
    "write_sessions",
]
