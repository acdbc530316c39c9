"""Curation round trip (issue 18 item 4): labels edited in suite2p's GUI on our export come back into the
store, exactly the edited rows change, earlier values stay in the history, refusals are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cindra_dask.cli import app
from cindra_dask.errors import InputError
from cindra_dask.export import export_suite2p
from cindra_dask.export.curation import HISTORY_ATTRIBUTE, import_curation
from cindra_dask.manifest import verify_store, write_manifest
from cindra_dask.store import RecordingStore
from tests.test_manifest import SyntheticStore, write_synthetic_store

runner = CliRunner()
CLASSIFICATION = "extraction/cell_classification"


@pytest.fixture()
def curated(tmp_path: Path) -> tuple[SyntheticStore, Path, dict[int, np.ndarray]]:
    """The synthetic store (with a combined classification), its suite2p export and the planes' original labels."""
    synthetic = write_synthetic_store(tmp_path / "store")
    store = RecordingStore(synthetic.path)
    originals = {plane: store.read(f"plane_{plane}/{CLASSIFICATION}") for plane in (0, 1)}
    store.write_array(f"combined/{CLASSIFICATION}", np.concatenate([originals[0], originals[1]]))
    store.update_group_attributes("combined", {"included_planes": [0, 1]})
    folder = tmp_path / "suite2p"
    export_suite2p(store.path, folder)
    return synthetic, folder, originals


def test_exactly_the_edited_rows_change_and_the_history_keeps_the_rest(curated: tuple[SyntheticStore, Path, dict[int, np.ndarray]]) -> None:
    synthetic, folder, originals = curated
    store = RecordingStore(synthetic.path)
    write_manifest(store)
    edits = {0: {1: (0.0, 0.9), 4: (1.0, 0.2)}, 1: {2: (1.0, 0.2), 0: (1.0, 0.55)}}  # GUI moves (0: two labels; 1: a label and a probability)
    for plane, rows in edits.items():
        iscell = np.load(folder / f"plane{plane}" / "iscell.npy")
        for row, values in rows.items():
            iscell[row] = values
        np.save(folder / f"plane{plane}" / "iscell.npy", iscell)

    result = runner.invoke(app, ["import-curation", str(store.path), str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["plane 0: 2 of 5 ROIs changed (rows 1, 4)", "plane 1: 2 of 4 ROIs changed (rows 0, 2)"]
    combined = store.read(f"combined/{CLASSIFICATION}")
    offsets = {0: 0, 1: 5}
    for plane, rows in edits.items():
        after = store.read(f"plane_{plane}/{CLASSIFICATION}")
        expected = originals[plane].copy()
        for row, values in rows.items():
            expected[row] = values
        np.testing.assert_array_equal(after, expected)
        untouched = [row for row in range(len(after)) if row not in rows]
        np.testing.assert_array_equal(after[untouched], originals[plane][untouched])
        np.testing.assert_array_equal(combined[offsets[plane] : offsets[plane] + len(after)], expected)
        (entry,) = store.array(f"plane_{plane}/{CLASSIFICATION}").attrs[HISTORY_ATTRIBUTE]
        assert entry["rows"] == sorted(rows) and entry["source"] == str(folder / f"plane{plane}" / "iscell.npy")
        np.testing.assert_array_equal(np.array(entry["previous"], np.float32), originals[plane][sorted(rows)])
    assert len(store.array(f"combined/{CLASSIFICATION}").attrs[HISTORY_ATTRIBUTE]) == 2
    assert verify_store(store) == []  # the manifest follows the import

    again = import_curation(store.path, folder)  # the same file again: nothing to change, no new history
    assert [curation.changed_rows for curation in again] == [(), ()]
    assert len(store.array(f"plane_0/{CLASSIFICATION}").attrs[HISTORY_ATTRIBUTE]) == 1
    export_suite2p(store.path, folder, overwrite=True)  # the next export carries the curation
    np.testing.assert_array_equal(np.load(folder / "plane0" / "iscell.npy"), store.read(f"plane_0/{CLASSIFICATION}"))


def test_refusals_are_one_line_and_change_nothing(curated: tuple[SyntheticStore, Path, dict[int, np.ndarray]], tmp_path: Path) -> None:
    synthetic, folder, originals = curated
    store = RecordingStore(synthetic.path)
    iscell = np.load(folder / "plane1" / "iscell.npy")
    np.save(folder / "plane1" / "iscell.npy", np.vstack([iscell, [[1.0, 0.9]]]))  # an ROI drawn in the GUI
    edited0 = np.load(folder / "plane0" / "iscell.npy")
    edited0[0, 0] = 1 - edited0[0, 0]
    np.save(folder / "plane0" / "iscell.npy", edited0)
    (tmp_path / "empty").mkdir()
    cases = {
        "rows differ": ([str(store.path), str(folder)], "5 rows but plane 1 of the store has 4 ROIs"),
        "no iscell": ([str(store.path), str(tmp_path / "empty")], "no plane{k}/iscell.npy"),
        "not a folder": ([str(store.path), str(tmp_path / "missing")], "not a folder"),
        "not a store": ([str(tmp_path / "missing.zarr"), str(folder)], "not a cindra-dask store"),
    }
    for name, (arguments, expected) in cases.items():
        result = runner.invoke(app, ["import-curation", *arguments])
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], (name, result.output)
    for plane in (0, 1):  # plane 0's valid edit was not written either: everything is checked first
        np.testing.assert_array_equal(store.read(f"plane_{plane}/{CLASSIFICATION}"), originals[plane])
        assert HISTORY_ATTRIBUTE not in store.array(f"plane_{plane}/{CLASSIFICATION}").attrs
    np.save(folder / "plane1" / "iscell.npy", np.full((4, 3), 0.5))
    with pytest.raises(InputError, match=r"expected an \(n, 2\) numeric array"):
        import_curation(store.path, folder)
