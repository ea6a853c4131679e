"""figures/ and pipeline/products.py: figures of synthetic and real Goodman files.

2D frames: axis labels, downsampling, limits, saturated pixels; 1D products: the wavelength
axis from the WCS, the uncertainty band, arc lines with their residuals and RMS; PNGs that
decode at the asked width; ProductError for files that cannot be shown.
"""
from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from figures import overlays as spectrum_overlays
from figures.interactive import figure_for_file
from figures.pixels import FigureError, compact, display_limits, saturation_level
from figures.png import png_for_file
from figures.style import COLORMAPS, colormap_key
from pipeline.products import ProductError, clear_cache, read_product, wavelength_axis
from tests.conftest import REAL_DATA


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.fixture(scope="module")
def science_frame(tmp_path_factory):
    """A synthetic raw Red-camera 2x2 science frame (948 x 2071 uint16) with a saturated patch."""
    from pipeline import simulate

    frame = simulate.make_science("400_M2", seed=3, cosmic_rays=False)
    data = frame.data.copy()
    data[500:504, 1000:1010] = 65535  # 40 saturated pixels
    path = tmp_path_factory.mktemp("viewers") / "0014_NGC5128_400_M2_27-11-2026.fits"
    fits.PrimaryHDU(data, frame.header).writeto(path)
    return path


def spectrum_file(path, *, n=1000, crval=5000.0, cdelt=2.0, crpix=1.0, ctype="WAVE", cunit="Angstrom",
                  obstype="COMP", lines=True, uncertainty="table"):
    flux = (100 + 50 * np.sin(np.arange(n) / 30.0)).astype(np.float32)
    header = fits.Header()
    header["OBSTYPE"], header["OBJECT"], header["PROPOSAL"] = obstype, "HgArNe", "SOAR2026B-001"
    if ctype is not None:
        header.update({"CTYPE1": ctype, "CUNIT1": cunit, "CRVAL1": crval, "CDELT1": cdelt, "CRPIX1": crpix})
    hdus = [fits.PrimaryHDU(flux, header)]
    sigma = np.full(n, 5.0, dtype=np.float32)
    if uncertainty == "table":
        hdus.append(fits.BinTableHDU.from_columns([fits.Column(name="uncertainty", format="E", array=sigma)],
                                                  name="UNCERT"))
    elif uncertainty == "image":
        image = fits.ImageHDU(sigma ** 2, name="UNCERT")
        image.header["UTYPE"] = "VarianceUncertainty"
        hdus.append(image)
    if lines:
        wavelengths = np.array([5100.0, 5600.0, 6200.0, 6700.0])
        residuals = np.array([0.03, -0.04, 0.02, -0.01])
        hdus.append(fits.BinTableHDU.from_columns([
            fits.Column(name="pixel", format="D", array=(wavelengths - crval) / cdelt),
            fits.Column(name="wavelength", format="D", array=wavelengths),
            fits.Column(name="residual", format="D", array=residuals)], name="LINES"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def png_size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_raw_frame_figure_axes_downsampling_and_zscale(science_frame):
    fig = figure_for_file(science_frame, data_type=0)
    heatmap = fig.data[0]
    assert heatmap.type == "heatmap"
    assert fig.layout.xaxis.title.text == "Dispersion Axis (Pixels)"
    assert fig.layout.yaxis.title.text == "Spatial Axis (Pixels)"
    assert "SPECTRUM NGC5128" in fig.layout.title.text and "SOAR2026B-001" in fig.layout.title.text
    z = np.asarray(heatmap.z)
    # 948 x 2071 = 1.96 M pixels -> block factor 2 to fit 600 000
    assert z.shape == (474, 1035) and z.size <= 600_000
    assert heatmap.dx == 2 and heatmap.dy == 2 and heatmap.x0 == 0.5
    assert list(fig.layout.xaxis.range) == [-0.5, 2070.5] and list(fig.layout.yaxis.range) == [-0.5, 947.5]
    # ZScale: limits hug the sky and bias, far below the bright lines and saturated patch
    assert 380 < heatmap.zmin < heatmap.zmax < 2000
    small = figure_for_file(science_frame, max_pixels=100_000).data[0]
    factor = math.ceil(math.sqrt(948 * 2071 / 100_000))
    assert np.asarray(small.z).shape == (948 // factor, 2071 // factor) and np.asarray(small.z).size <= 100_000


def test_limits_percentiles_and_colormaps(science_frame):
    fig = figure_for_file(science_frame, zmin=400, zmax=450, colormap="viridis")
    assert (fig.data[0].zmin, fig.data[0].zmax) == (400, 450)
    assert fig.data[0].colorscale[0][1].lower() in ("#440154", "rgb(68,1,84)", "rgb(68, 1, 84)")
    low, high = display_limits(np.arange(1001.0), percentiles=(10, 90))
    assert (low, high) == (100.0, 900.0)
    assert display_limits(np.arange(1001.0), percentiles=(10, 90), zmax=950) == (100.0, 950.0)
    with pytest.raises(FigureError):
        display_limits(np.arange(10.0), percentiles=(90, 10))
    assert {"gray", "viridis", "inferno", "magma", "plasma", "cividis", "hot"} <= set(COLORMAPS)
    assert colormap_key("Viridis") == "viridis" and colormap_key("nonsense") == "gray"


def test_saturated_pixels_highlighted_on_demand(science_frame):
    plain = figure_for_file(science_frame)
    assert [t.name for t in plain.data] == ["image"]
    fig = figure_for_file(science_frame, show_saturated=True, saturation=69257)  # capped at 65535
    marks = [t for t in fig.data if (t.name or "").startswith("saturated")]
    assert len(marks) == 1 and marks[0].name == "saturated (40 px)"
    xs, ys = np.asarray(marks[0].x), np.asarray(marks[0].y)
    assert xs.min() >= 999 and xs.max() <= 1010 and ys.min() >= 499 and ys.max() <= 504
    assert any("65535 ADU): 40 px" in a.text for a in fig.layout.annotations)
    # the PNG paints them red
    def red(png):
        rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
        top = 60  # below the title and the red "saturated ... px" caption
        r, g, b = rgb[top:, :, 0], rgb[top:, :, 1], rgb[top:, :, 2]
        return int(((r > 200) & (g < 90) & (b < 90)).sum())

    with_saturated = png_for_file(science_frame, width=800, show_saturated=True)
    without = png_for_file(science_frame, width=800)
    assert red(with_saturated) > 0 and red(without) == 0


def test_png_decodes_at_the_asked_width(science_frame, tmp_path):
    for width in (640, 1000):
        data = png_for_file(science_frame, width=width, colormap="inferno")
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert png_size(data)[0] == width
    spectrum = spectrum_file(tmp_path / "wec_arc.fits")
    assert png_size(png_for_file(spectrum, width=700))[0] == 700
    gray = png_for_file(science_frame, width=400)
    hot = png_for_file(science_frame, width=400, colormap="hot")
    assert gray != hot
    with pytest.raises(FigureError):
        png_for_file(science_frame, width=20)


def test_imaging_frame_axes(tmp_path):
    header = fits.Header({"OBSTYPE": "OBJECT", "OBJECT": "M83", "WAVMODE": "IMAGING", "GRATING": "NO_GRATING"})
    path = tmp_path / "img.fits"
    fits.PrimaryHDU(np.random.default_rng(1).normal(1000, 10, (300, 300)).astype(np.float32), header).writeto(path)
    fig = figure_for_file(path)
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("X (Pixels)", "Y (Pixels)")
    assert fig.layout.yaxis.scaleanchor == "x"


def test_calibrated_arc_wavelength_axis_band_lines_and_residuals(tmp_path):
    path = spectrum_file(tmp_path / "wecfzst_0015_HgArNe.fits", n=1000, crval=5000.0, cdelt=2.0)
    fig = figure_for_file(path, data_type=4)
    flux = next(t for t in fig.data if t.name == "flux")
    x = np.asarray(flux.x)
    assert x[0] == pytest.approx(5000.0) and x[-1] == pytest.approx(5000.0 + 2.0 * 999)
    assert fig.layout.xaxis2.title.text == "Wavelength (\u00c5)"  # shared axis, labelled under the residuals
    band = [t for t in fig.data if (t.name or "").startswith("uncertainty")]
    assert len(band) == 2 and band[1].fill == "tonexty"
    assert np.asarray(band[1].y)[0] == pytest.approx(np.asarray(flux.y)[0] + 5.0)
    used = next(t for t in fig.data if (t.name or "").startswith("lines used"))
    assert list(np.asarray(used.x)) == [5100.0, 5600.0, 6200.0, 6700.0]
    residuals = next(t for t in fig.data if t.name == "residuals")
    assert residuals.yaxis == "y2"
    rms = math.sqrt(np.mean(np.array([0.03, -0.04, 0.02, -0.01]) ** 2))
    titles = [a.text for a in fig.layout.annotations]
    assert f"Residuals: RMS {rms:.3f} \u00c5 \u00b7 4 lines used, 0 rejected" in titles


def test_wcs_variants_and_pixel_fallback(tmp_path):
    nm = spectrum_file(tmp_path / "nm.fits", crval=500.0, cdelt=0.2, crpix=11.0, cunit="nm", lines=False)
    x = np.asarray(next(t for t in figure_for_file(nm).data if t.name == "flux").x)
    assert x[10] == pytest.approx(5000.0) and x[11] - x[10] == pytest.approx(2.0)
    bare = spectrum_file(tmp_path / "extracted.fits", ctype=None, lines=False, uncertainty="image",
                         obstype="SPECTRUM")
    fig = figure_for_file(bare, data_type=3)
    flux = next(t for t in fig.data if t.name == "flux")
    assert fig.layout.xaxis.title.text == "Dispersion Axis (Pixels)"
    assert list(np.asarray(flux.x)[:3]) == [0, 1, 2]
    band = [t for t in fig.data if (t.name or "").startswith("uncertainty")]
    assert np.asarray(band[1].y)[0] == pytest.approx(np.asarray(flux.y)[0] + 5.0)  # sqrt of the variance
    # a science product keeps its LINES but shows no residual panel; overlays mark lines
    science = spectrum_file(tmp_path / "wsci.fits", obstype="SPECTRUM")
    fig = figure_for_file(science, overlays=("sky", "galaxy"), redshift=0.01)
    names = [t.name for t in fig.data]
    assert "residuals" not in names and "Sky lines" in names and "Galaxy / stellar lines (z = 0.01)" in names
    galaxy = next(t for t in fig.data if t.name.startswith("Galaxy"))
    halpha = [v for v in np.asarray(galaxy.x, dtype=object) if v is not None and abs(v - 6562.80 * 1.01) < 1e-6]
    assert halpha


def test_wavelength_axis_reads_iraf_headers_too():
    """The FITS standard's WAVE/AWAV through astropy's WCS, and what IRAF and older reductions write:
    LINEAR with a CD matrix, no or an unofficial unit, no CRPIX1, log-linear DC-FLAG."""
    def header(**cards):
        return fits.Header({"NAXIS": 1, "NAXIS1": 5, **cards})

    assert list(wavelength_axis(header(CTYPE1="AWAV", CUNIT1="nm", CRVAL1=500.0, CDELT1=0.2, CRPIX1=1.0), 2)) \
        == [5000.0, 5002.0]
    linear = header(CTYPE1="LINEAR", CRVAL1=5000.0, CD1_1=2.0)  # CRPIX1 missing: 1, as IRAF reads it
    assert list(wavelength_axis(linear, 2)) == [5000.0, 5002.0]
    assert list(wavelength_axis(header(**linear, CUNIT1="Angstroms"), 2)) == [5000.0, 5002.0]
    log = header(CTYPE1="LINEAR", CRVAL1=3.7, CDELT1=0.001, CRPIX1=1.0, **{"DC-FLAG": 1})
    assert wavelength_axis(log, 2) == pytest.approx([10 ** 3.7, 10 ** 3.701])
    bare = header(CRVAL1=5000.0, CDELT1=2.0)  # no CTYPE1: wavelengths only once calibrated
    assert wavelength_axis(bare, 2, data_type=3) is None and wavelength_axis(bare, 2, data_type=4) is not None
    assert wavelength_axis(header(CTYPE1="FREQ", CUNIT1="Hz", CRVAL1=6e14, CDELT1=1e10), 2) is None
    assert wavelength_axis(header(CTYPE1="WAVE", CRVAL1=5000.0, CDELT1=0.0), 2) is None


def test_overlay_lists():
    sky = spectrum_overlays.overlay_lines("sky", wmin=5500, wmax=6000)
    assert [round(l.wavelength, 2) for l in sky] == [5577.34, 5889.95, 5895.92]
    galaxy = spectrum_overlays.overlay_lines("galaxy", redshift=0.1, wmin=7200, wmax=7250)
    assert [l.label for l in galaxy] == ["[N II]", "H\u03b1", "[N II]"]  # 6548, 6563, 6583 at z = 0.1
    arc = spectrum_overlays.overlay_lines("arc", lines_table={"wavelength": np.array([5460.742]),
                                                              "residual": np.array([0.012])})
    assert arc[0].label == "5460.74 (+0.012 \u00c5)"
    with pytest.raises(ValueError):
        spectrum_overlays.overlay_lines("moon")


def test_real_goodman_arc_and_compact_transfer():
    path = REAL_DATA / "sp_400m2.fits"
    assert path.exists(), f"the real test data is missing: {path}"
    fig = figure_for_file(path)
    z = np.asarray(fig.data[0].z)
    assert z.size <= 600_000 and z.dtype in (np.uint16, np.int16, np.float32)
    assert fig.layout.xaxis.title.text == "Dispersion Axis (Pixels)"
    assert png_size(png_for_file(path, width=900))[0] == 900
    noisy = np.random.default_rng(0).normal(400, 5, (50, 50))
    assert compact(noisy).dtype == np.int16
    flat = np.random.default_rng(0).normal(1.0, 0.01, (50, 50))
    assert compact(flat).dtype == np.float32


def test_cache_follows_the_file_on_disk(tmp_path):
    path = tmp_path / "frame.fits"
    fits.PrimaryHDU(np.zeros((20, 30), dtype=np.float32)).writeto(path)
    assert read_product(path).data.max() == 0
    fits.PrimaryHDU(np.ones((20, 31), dtype=np.float32)).writeto(path, overwrite=True)
    assert read_product(path).data.shape == (20, 31)


def test_bad_files_raise_viewer_error(tmp_path):
    with pytest.raises(ProductError, match="Cannot read missing.fits"):
        figure_for_file(tmp_path / "missing.fits")
    text = tmp_path / "notes.fits"
    text.write_text("this is not FITS")
    with pytest.raises(ProductError):
        figure_for_file(text)
    with pytest.raises(ProductError):
        png_for_file(text)
    table_only = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="E", array=np.ones(3))])]).writeto(table_only)
    with pytest.raises(ProductError, match="no image or spectrum"):
        figure_for_file(table_only)
    truncated = tmp_path / "truncated.fits"
    fits.PrimaryHDU(np.ones((200, 200), dtype=np.float32)).writeto(truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(ProductError):
        figure_for_file(truncated)


def test_the_viewer_and_the_catalogue_agree_on_saturation():
    """One value from one rule: the Red camera's half full well (69257 ADU) is above the 16-bit converter's
    ceiling, so both the catalogue (and the API's saturation_value) and the viewer say 65535."""
    from pipeline import headers, simulate

    header = simulate.make_science(seed=1, cosmic_rays=False).header
    catalogued = headers.classify(header, "0014_NGC5128_400_M2_27-11-2026.fits")["saturation_value"]
    assert headers.saturation_value("Red", 1.48, 3.89) == 69257
    assert catalogued == saturation_level(header) == 65535


def test_overlay_labels_never_write_over_one_another():
    rows = spectrum_overlays.LabelRows(5000.0, 9000.0)
    char = 4000.0 * spectrum_overlays.LABEL_CHAR_FRACTION
    placed = [(w, rows.place(w, "[O I]")) for w in np.arange(5000.0, 9000.0, 5.0)]  # a line every 5 A
    shown = [(w, level) for w, level in placed if level is not None]
    assert 0 < len(shown) < len(placed) and {level for _, level in shown} == set(range(spectrum_overlays.LABEL_ROWS))
    for level in range(spectrum_overlays.LABEL_ROWS):
        centres = sorted(w for w, row in shown if row == level)
        assert all(b - a >= 6 * char for a, b in itertools.pairwise(centres))  # 5 characters and a space apart
