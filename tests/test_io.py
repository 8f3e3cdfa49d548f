"""Image IO: geometry survives a write/read round trip for every ending; atomic writes; bad files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from toolkit.errors import SegkitError
from toolkit.io import Geometry, read_case_images, read_geometry, read_image, write_image
from toolkit.io.images import supported_endings

ENDINGS = [".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr"]


def _oblique_geometry() -> Geometry:
    c, s = np.cos(0.3), np.sin(0.3)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0)
    return Geometry((0.781, 0.781, 2.5), (-120.5, 33.25, 7.0), direction)


def test_all_endings_registered():
    assert set(ENDINGS) <= set(supported_endings())


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_geometry_round_trip(tmp_path, ending, dtype):
    rng = np.random.default_rng(0)
    array = (rng.random((5, 7, 9)) * 100).astype(dtype)
    geometry = _oblique_geometry()
    path = tmp_path / f"img{ending}"
    write_image(array, geometry, path)
    back, geo = read_image(path)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(geo.spacing_xyz, geometry.spacing_xyz, rtol=0, atol=1e-6)
    np.testing.assert_allclose(geo.origin_xyz, geometry.origin_xyz, rtol=0, atol=1e-4)
    np.testing.assert_allclose(geo.direction, geometry.direction, rtol=0, atol=1e-6)
    assert geo.spacing == pytest.approx((2.5, 0.781, 0.781), abs=1e-6)  # NIfTI stores float32
    shape, header_geo = read_geometry(path)
    assert shape == array.shape and header_geo.differs_from(geo) is None
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_2d_round_trip(tmp_path):
    geometry = Geometry((0.5, 0.7), (1.0, 2.0), (1.0, 0.0, 0.0, 1.0))
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    write_image(array, geometry, tmp_path / "a.nii.gz")
    back, geo = read_image(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(back, array)
    assert geo.ndim == 2 and geo.spacing == pytest.approx((0.7, 0.5), abs=1e-6)


def test_multichannel_case(tmp_path):
    g = _oblique_geometry()
    for ch in range(3):
        write_image(np.full((4, 5, 6), ch, np.float32), g, tmp_path / f"c_{ch:04d}.nii.gz")
    data, geo = read_case_images([tmp_path / f"c_{ch:04d}.nii.gz" for ch in range(3)])
    assert data.shape == (3, 4, 5, 6) and data.dtype == np.float32
    assert [float(data[c].mean()) for c in range(3)] == [0.0, 1.0, 2.0]
    write_image(np.zeros((4, 5, 7), np.float32), g, tmp_path / "c_0003.nii.gz")
    with pytest.raises(SegkitError, match="c_0003.nii.gz: channel does not match"):
        read_case_images([tmp_path / "c_0000.nii.gz", tmp_path / "c_0003.nii.gz"])


def test_unsupported_and_missing(tmp_path):
    with pytest.raises(SegkitError, match="unsupported file ending"):
        read_image(tmp_path / "x.png.zip")
    with pytest.raises(SegkitError, match="file not found"):
        read_image(tmp_path / "x.nii.gz")


def test_truncated_nifti_is_an_error(tmp_path):
    """ITK pads truncated NIfTI with zeros; we refuse it."""
    path = tmp_path / "t.nii.gz"
    write_image(np.random.default_rng(0).random((20, 30, 30)).astype(np.float32), _oblique_geometry(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SegkitError, match="truncated"):
        read_image(path)
    raw = tmp_path / "t.nii"
    write_image(np.ones((20, 30, 30), np.float32), _oblique_geometry(), raw)
    raw.write_bytes(raw.read_bytes()[:-100])
    with pytest.raises(SegkitError, match="truncated"):
        read_image(raw)


def test_cli_starts_without_torch():
    """Commands that run no network must not import torch at start-up."""
    code = (
        "import sys; from toolkit.cli import cli, COMMANDS; "
        "from click.testing import CliRunner; "
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
        "[cli.get_command(None, n) for n in ('verify', 'split', 'plan', 'fingerprint', 'preprocess', "
        "'evaluate', 'convert') if n in COMMANDS]; "
        "assert 'torch' not in sys.modules, 'torch imported at start-up'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
