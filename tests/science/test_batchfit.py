"""The batched Levenberg-Marquardt (pipeline.batchfit) finds each fit's own minimum: the one scipy's MINPACK
finds fit by fit, on lines of known truth, with bounds kept and failures reported per fit."""
import numpy as np
from scipy import optimize

from pipeline import batchfit, wavelength

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def noisy_lines(rng, centres, sigma=1.6, n=2000):
    x = np.arange(n, dtype=float)
    amplitudes = rng.uniform(200.0, 20000.0, centres.size)
    flux = sum(a * np.exp(-0.5 * ((x - c) / sigma) ** 2) for a, c in zip(amplitudes, centres))
    return flux + 50.0 + rng.normal(0.0, 8.0, n), amplitudes


def minpack_centre(flux, peak, sigma):
    """One line fitted alone by scipy (MINPACK), on the window fit_peaks uses."""
    half = max(3, int(round(sigma * FWHM_PER_SIGMA)) + 1)
    x = np.arange(peak - half, peak + half + 1, dtype=float)
    y = flux[peak - half:peak + half + 1]

    def gaussian(x, amplitude, centre, width, constant):
        return amplitude * np.exp(-0.5 * ((x - centre) / width) ** 2) + constant
    params, covariance = optimize.curve_fit(gaussian, x, y, p0=(y.max() - y.min(), peak, sigma, y.min()),
                                            xtol=1e-12, ftol=1e-12)
    return params[1], np.sqrt(covariance[1, 1])


def test_every_line_lands_where_minpack_puts_it_and_near_the_truth():
    rng = np.random.default_rng(7)
    centres = np.sort(rng.uniform(30.0, 1970.0, 60))
    centres = centres[np.diff(centres, prepend=0.0) > 15.0]  # isolated lines
    flux, _ = noisy_lines(rng, centres)
    peaks = np.rint(centres).astype(int)
    found = wavelength.fit_peaks(flux, peaks, 1.6)
    assert all(peak is not None for peak in found)
    for peak, fit, truth in zip(peaks, found, centres):
        centre, error = minpack_centre(flux, peak, 1.6)
        assert abs(fit.centre - centre) < 1e-6
        assert abs(fit.centre_error - error) < 1e-3 * error
        assert abs(fit.centre - truth) < 5 * error + 1e-3


def test_a_window_off_the_edge_fails_alone():
    rng = np.random.default_rng(8)
    flux, _ = noisy_lines(rng, np.array([500.0, 1000.0]))
    found = wavelength.fit_peaks(flux, [500, -3, 1000], 1.6)  # -3: its window holds 3 pixels of the spectrum
    assert found[1] is None
    assert abs(found[0].centre - 500.0) < 0.02 and abs(found[2].centre - 1000.0) < 0.02


def test_bounds_are_kept():
    """A Gaussian fitted with a Moffat: its power grows without end, and stops at the upper bound."""
    x = np.tile(np.arange(-10.0, 11.0), (2, 1))
    y = np.exp(-0.5 * (x / 2.0) ** 2) * np.array([[100.0], [300.0]])

    def moffat(params, rows):
        amplitude, centre, gamma, alpha = (params[:, [i]] for i in range(4))
        base = 1.0 + ((x[rows] - centre) / gamma) ** 2
        core = base ** -alpha
        slope = amplitude * alpha * core / base * 2.0 * (x[rows] - centre) / gamma ** 2
        jacobian = np.stack([core, slope, slope * (x[rows] - centre) / gamma, -amplitude * core * np.log(base)], -1)
        return amplitude * core - y[rows], jacobian
    fit = batchfit.levenberg_marquardt(moffat, [[90.0, 0.3, 3.0, 2.5], [250.0, -0.2, 3.0, 2.5]], np.ones_like(x),
                                       lower=[0.0, -np.inf, 0.2, 0.6], upper=[np.inf, np.inf, np.inf, 20.0])
    assert fit.converged.all()
    np.testing.assert_array_equal(fit.params[:, 3], [20.0, 20.0])
    np.testing.assert_allclose(fit.params[:, 1], [0.0, 0.0], atol=1e-6)
