"""The Extract block: identify targets in a reduced 2D spectrum, trace them,
and extract 1D spectra (fractional-pixel boxcar or optimal), plus an arc
along a science trace.

Geometry: rows are the spatial axis (y), columns the dispersion axis (x);
pixel centres sit on integers, pixel ``y`` covers ``y - 0.5 .. y + 0.5``.
Traces are power-basis polynomials (lowest order first) giving the row of
the target centre at column x.  Fluxes are in ADU per column.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import bottleneck
import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.stats import mad_std
from numpy.polynomial import Polynomial
from scipy import ndimage, signal

from pipeline import batchfit, reduce
from pipeline.reduce import ReductionError
from pipeline.settings import ReductionSettings
from pipeline.timing import stage

DETECTION_SIGMA = 5.0       # a target's peak stands this far above the profile noise
MIN_FWHM = 1.0              # px: narrower peaks are hot rows or residual cosmic rays
MAX_FWHM_FRACTION = 0.2     # of the slit length: wider bumps are illumination, not targets
EDGE_CLEARANCE_FWHM = 2.0   # a target's centre lies this many FWHM inside the slit ends
TRACE_BIN_COLUMNS = 80      # columns collapsed into one trace sample (kills cosmic rays; 25 samples at 2x2)
TRACE_WINDOW_FWHM = 3.0     # half-width of the fitting window around the predicted centre
TRACE_DEGREE = 3
TRACE_CLIP_SIGMA = 3.0
APERTURE_FWHM = 1.0         # aperture half-width: centre +- 1 FWHM (goodman-pipeline's width 2)
BACKGROUND_GAP_FWHM = 3.0   # gap between the aperture and each background band (goodman-pipeline)
OPTIMAL_WINDOW_FWHM = 3.0   # optimal extraction uses centre +- 3 FWHM
OPTIMAL_CLIP_SIGMA = 5.0    # Horne's rejection of pixels that disagree with the profile
OPTIMAL_ITERATIONS = 3
SKY_WIDTH_FWHM = 15.0       # flexure's sky: a band this wide each side, beyond the background gap (faint
                            # sky lines need many rows to be centroided to a few hundredths of a pixel)
SKY_CLIP_SIGMA = 3.0        # cosmic rays and faint sources in those bands

class NoTargetsError(ReductionError):
    """No target could be identified in the frame."""


@dataclass
class Target:
    """An identified target: its centre and profile on the collapsed spatial profile."""

    number: int
    center: float
    amplitude: float
    fwhm: float
    snr: float


@dataclass
class Trace:
    """Row of a target's centre along the dispersion axis, and its measured shape."""

    coefficients: tuple[float, ...]   # power basis, lowest order first, x = column
    fwhm: float                       # px, median over the trace samples
    shape: dict                       # model parameters other than centre and amplitude
    rms: float                        # px, scatter of the accepted samples about the fit
    samples: int
    rejected: int

    def __call__(self, x) -> np.ndarray:
        return Polynomial(self.coefficients)(np.asarray(x, dtype=float))


@dataclass
class ExtractedSpectrum:
    """A 1D spectrum (ADU per column) with what it took to get it."""

    number: int
    flux: np.ndarray
    uncertainty: np.ndarray
    background: np.ndarray            # ADU subtracted per column (whole aperture)
    trace: Trace
    record: dict = field(default_factory=dict)
    sky: np.ndarray | None = None     # ADU per column under the aperture, from wide bands: flexure's sky lines


# --- identification --------------------------------------------------------------

def collapse(data: np.ndarray, axis: int) -> np.ndarray:
    """Interquartile mean: as immune to cosmic rays and sky lines as a median, but a
    median of integer counts is quantized, which would pass for structure.

    scipy's ``trim_mean(data, 0.25, axis)`` to the bit, on the data's own float type (sorting float32 costs
    less than float64; the mean is summed in float64) and without its per-call checks: a frame's profile and
    trace bins took 0.08 s through it, 0.05 s here."""
    count = data.shape[axis]
    low, high = int(0.25 * count), count - int(0.25 * count)
    middle = np.moveaxis(np.partition(data, (low, high - 1), axis=axis), axis, 0)[low:high]
    return middle.mean(axis=0, dtype=np.float64)


def spatial_profile(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The profile collapsed along dispersion, its smooth background (a wide
    running median) and the noise of the difference."""
    profile = collapse(data, axis=1)
    width = max(51, (profile.size // 10) | 1)
    background = ndimage.median_filter(profile, size=width, mode="nearest")
    # differences of neighbours ignore smooth structure; /sqrt(2) for the pair
    noise = float(mad_std(np.diff(profile - background))) / np.sqrt(2.0)
    return profile, background, max(noise, np.finfo(np.float32).tiny)


def identify_targets(ccd: CCDData, settings: ReductionSettings) -> tuple[list[Target], dict]:
    """Up to ``settings.max_targets`` point sources, brightest first.

    A peak of the background-subtracted spatial profile is a target only if it
    stands DETECTION_SIGMA above the noise, its fitted profile is wider than a
    hot row and narrower than an illumination bump, and it sits clear of the
    slit ends (hot edges).
    """
    profile, background, noise = spatial_profile(np.asarray(ccd.data))
    residual = profile - background
    peaks, _ = signal.find_peaks(residual, height=DETECTION_SIGMA * noise,
                                 prominence=DETECTION_SIGMA * noise)
    peaks = peaks[np.argsort(residual[peaks])[::-1]]
    targets: list[Target] = []
    rejected = []
    for peak in peaks:
        if len(targets) == settings.max_targets:
            break
        model = _fit_profiles(residual[None, :], [float(peak)], [_peak_width(residual, peak)],
                              settings.target_fit_model)[0]
        reason = _rejection_reason(model, residual.size, noise, targets)
        if reason:
            rejected.append({"row": int(peak), "reason": reason})
            continue
        targets.append(Target(number=len(targets) + 1, center=model.center, amplitude=model.amplitude,
                              fwhm=model.fwhm, snr=model.amplitude / noise))
    record = {"profile_noise": noise, "candidates": int(peaks.size), "rejected": rejected,
              "targets": [vars(target).copy() for target in targets]}
    return targets, record


def _peak_width(residual: np.ndarray, peak: int) -> float:
    width = signal.peak_widths(residual, [peak], rel_height=0.5)[0][0]
    return float(np.clip(width, 1.0, residual.size / 4))


def _rejection_reason(model: Profile | None, n_rows: int, noise: float, accepted: list[Target]) -> str | None:
    if model is None:
        return "profile fit failed"
    center, fwhm = model.center, model.fwhm
    if not MIN_FWHM <= fwhm <= MAX_FWHM_FRACTION * n_rows:
        return f"FWHM {fwhm:.2f} px is not a point source"
    if model.amplitude < DETECTION_SIGMA * noise:
        return "fitted peak below the detection limit"
    if not EDGE_CLEARANCE_FWHM * fwhm <= center <= n_rows - 1 - EDGE_CLEARANCE_FWHM * fwhm:
        return "at the slit edge"
    if any(abs(center - target.center) < max(fwhm, target.fwhm) for target in accepted):
        return "duplicate of a brighter target"
    return None


# --- profile models ---------------------------------------------------------------------

_MOFFAT_START_ALPHA = 2.5
_GAUSSIAN_FWHM_PER_SIGMA = 2 * np.sqrt(2 * np.log(2))


@dataclass(frozen=True)
class Profile:
    """A fitted spatial profile: Gaussian (``width`` = sigma) or Moffat
    (``width`` = gamma, power ``alpha``), the parametrization of astropy's
    Gaussian1D and Moffat1D."""

    kind: str
    amplitude: float
    center: float
    width: float
    alpha: float = 0.0

    @property
    def fwhm(self) -> float:
        if self.kind == "gaussian":
            return _GAUSSIAN_FWHM_PER_SIGMA * self.width
        return 2.0 * self.width * np.sqrt(2.0 ** (1.0 / self.alpha) - 1.0)

    @property
    def shape(self) -> dict:
        """The parameters other than centre and amplitude, as the trace records them."""
        if self.kind == "gaussian":
            return {"stddev": self.width}
        return {"gamma": self.width, "alpha": self.alpha}


def _profiles_and_jacobian(kind: str, params: np.ndarray, rows: np.ndarray, with_constant: bool):
    """Each fit's model values and analytic derivatives (params: fits x parameters; rows: fits x points)."""
    amplitude, center, width = (params[:, [i]] for i in range(3))
    offset = rows - center
    if kind == "gaussian":
        z = offset / width
        core = np.exp(-0.5 * z * z)
        columns = [core, amplitude * core * z / width, amplitude * core * z * z / width]
    else:
        alpha = params[:, [3]]
        base = 1.0 + (offset / width) ** 2
        core = base ** -alpha
        slope = amplitude * alpha * core / base * 2.0 * offset / width ** 2
        columns = [core, slope, slope * offset / width, -amplitude * core * np.log(base)]
    value = amplitude * core + (params[:, [-1]] if with_constant else 0.0)
    if with_constant:
        columns.append(np.ones_like(rows))
    return value, np.stack(columns, axis=-1)


def _fit_profiles(values: np.ndarray, centers: np.ndarray, fwhms: np.ndarray, kind: str,
                  with_constant: bool = False) -> list[Profile | None]:
    """The target model (plus a constant) fitted to each profile of ``values`` (fits x rows) near its
    ``centers``; None where the fit fails or wanders off.

    Bounded Levenberg-Marquardt with analytic derivatives, all fits at once (``pipeline.batchfit``): a
    frame's trace is dozens of these small fits, and one solver call each would cost ten times more."""
    centers, fwhms = np.asarray(centers, dtype=float), np.asarray(fwhms, dtype=float)
    half = np.maximum(TRACE_WINDOW_FWHM * fwhms, 5.0)
    n_rows = values.shape[1]
    rows = np.floor(centers - half).astype(int)[:, None] + np.arange(int(np.ceil(2 * half.max())) + 2)
    near = (np.abs(rows - centers[:, None]) <= half[:, None]) & (rows >= 0) & (rows < n_rows)
    y = np.take_along_axis(values, np.clip(rows, 0, n_rows - 1), axis=1)
    highest = np.where(near, y, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):  # a window with no rows is left out below
        amplitude = np.maximum(highest - (np.nanmedian(np.where(near, y, np.nan), axis=1) if with_constant else 0),
                               1e-6)
    if kind == "gaussian":
        start, low, high = [amplitude, centers, fwhms / _GAUSSIAN_FWHM_PER_SIGMA], [0.0, -np.inf, 0.2], \
            [np.inf, np.inf, np.inf]
    else:
        gamma = fwhms / (2 * np.sqrt(2 ** (1 / _MOFFAT_START_ALPHA) - 1))
        start, low, high = [amplitude, centers, gamma, np.full(centers.size, _MOFFAT_START_ALPHA)], \
            [0.0, -np.inf, 0.2, 0.6], [np.inf, np.inf, np.inf, 20.0]
    if with_constant:
        start, low, high = start + [np.where(near, y, np.inf).min(axis=1)], low + [-np.inf], high + [np.inf]
    enough = near.sum(axis=1) >= 5
    start = np.nan_to_num(np.column_stack(start), nan=1.0, posinf=1.0, neginf=1.0)  # windows left out below

    def problem(params, which):
        model, jacobian = _profiles_and_jacobian(kind, params, rows[which].astype(float), with_constant)
        return model - np.nan_to_num(y[which]), jacobian

    fit = batchfit.levenberg_marquardt(problem, start, near.astype(float), low, high)
    found = []
    for params, usable, center, reach in zip(fit.params, enough, centers, half):
        if not usable or not np.isfinite(params).all() or abs(params[1] - center) > reach:
            found.append(None)
            continue
        found.append(Profile(kind, *(float(value) for value in params[:3]),
                             alpha=float(params[3]) if kind != "gaussian" else 0.0))
    return found


# --- tracing -----------------------------------------------------------------------------

def trace_bins(ccd: CCDData) -> tuple[np.ndarray, np.ndarray]:
    """(centre column of each bin of TRACE_BIN_COLUMNS columns, the spatial profile of each bin): what every
    target of a frame is traced on, collapsed once per frame."""
    data = np.asarray(ccd.data)
    nx = data.shape[1]
    edges = np.arange(0, nx + 1, TRACE_BIN_COLUMNS)
    edges[-1] = nx
    binned = np.stack([collapse(data[:, a:b], axis=1) for a, b in zip(edges[:-1], edges[1:])])
    return (edges[:-1] + edges[1:] - 1) / 2.0, binned


def trace_target(ccd: CCDData, target: Target, settings: ReductionSettings,
                 bins: tuple[np.ndarray, np.ndarray] | None = None) -> Trace:
    """Fit the profile in bins of TRACE_BIN_COLUMNS columns (``bins``: :func:`trace_bins` of ``ccd``, given when
    several targets are traced), then a clipped polynomial.

    A first pass follows a straight line from the identified centre; a second
    pass searches around the first polynomial, so steep or curved traces are kept.
    """
    x, binned = trace_bins(ccd) if bins is None else bins
    prediction = Polynomial([target.center])
    fwhm = target.fwhm
    for _ in range(2):
        samples = _trace_samples(binned, prediction(x), fwhm, settings.target_fit_model)
        good = np.array([sample is not None for sample in samples])
        if np.count_nonzero(good) <= TRACE_DEGREE + 1:
            raise ReductionError(f"target {target.number} at row {target.center:.1f} could not be traced")
        centers = np.array([s.center if s is not None else np.nan for s in samples])
        polynomial, kept = _clipped_polynomial(x[good], centers[good])
        fwhm = float(np.median([s.fwhm for s in np.array(samples, dtype=object)[good][kept]]))
        prediction = polynomial
    accepted = np.array(samples, dtype=object)[good][kept]
    residuals = centers[good][kept] - polynomial(x[good][kept])
    shapes = [sample.shape for sample in accepted]
    return Trace(coefficients=tuple(float(c) for c in polynomial.convert().coef),
                 fwhm=fwhm, shape={key: float(np.median([s[key] for s in shapes])) for key in shapes[0]},
                 rms=float(np.sqrt(np.mean(residuals ** 2))), samples=int(kept.sum()),
                 rejected=int(x.size - kept.sum()))


def _trace_samples(binned: np.ndarray, centers: np.ndarray, fwhm: float, kind: str) -> list[Profile | None]:
    """The profile fitted in each bin (``binned``: bins x rows) near its predicted centre; None where it
    fails, is not point-like or strays more than a FWHM."""
    models = _fit_profiles(binned, centers, np.full(centers.size, fwhm), kind, with_constant=True)
    return [model if model is not None and MIN_FWHM <= model.fwhm <= 3 * fwhm and abs(model.center - center) <= fwhm
            else None for model, center in zip(models, centers)]


def _clipped_polynomial(x: np.ndarray, y: np.ndarray) -> tuple[Polynomial, np.ndarray]:
    kept = np.ones(x.size, dtype=bool)
    for _ in range(5):
        polynomial = Polynomial.fit(x[kept], y[kept], min(TRACE_DEGREE, kept.sum() - 1))
        residuals = y - polynomial(x)
        scatter = max(float(mad_std(residuals[kept])), 0.02)
        now = np.abs(residuals) <= TRACE_CLIP_SIGMA * scatter
        if np.array_equal(now, kept) or now.sum() <= TRACE_DEGREE + 1:
            break
        kept = now
    return polynomial, kept


# --- extraction --------------------------------------------------------------------------

def aperture_weights(center: np.ndarray, low: float, high: float, rows: np.ndarray) -> np.ndarray:
    """Fraction of each pixel (rows x columns) inside ``center + low .. center + high``."""
    top = np.minimum(rows[:, None] + 0.5, center[None, :] + high)
    bottom = np.maximum(rows[:, None] - 0.5, center[None, :] + low)
    return np.clip(top - bottom, 0.0, 1.0)


def _cutout(ccd: CCDData, trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows (absolute), trace centre per column, data and variance (ADU^2) of the
    rows the aperture and its background bands can reach: a 1x1 frame stays cheap."""
    ny, nx = ccd.shape
    center = trace(np.arange(nx))
    reach = (3 * APERTURE_FWHM + BACKGROUND_GAP_FWHM) * trace.fwhm + 2
    low = int(max(0, np.floor(center.min() - reach)))
    high = int(min(ny, np.ceil(center.max() + reach) + 1))
    data = np.asarray(ccd.data[low:high], dtype=np.float64)
    if ccd.uncertainty is not None:
        variance = np.asarray(ccd.uncertainty.represent_as(StdDevUncertainty).array[low:high], float) ** 2
    else:
        gain, read_noise = _gain_and_read_noise(ccd)
        variance = np.clip(data, 0.0, None) / gain + (read_noise / gain) ** 2
    return np.arange(low, high, dtype=float), center, data, variance


def _gain_and_read_noise(ccd: CCDData) -> tuple[float, float]:
    gain, read_noise = reduce.require(ccd.header, "GAIN", "RDNOISE")
    return float(gain), float(read_noise)


def _aperture_sum(data, variance, weights):
    return (weights * data).sum(axis=0), (weights ** 2 * variance).sum(axis=0)


def _background(data, variance, center, trace: Trace, others: Sequence[Trace], rows) -> tuple:
    """Background per pixel and its variance, per column, from the usable side bands."""
    half = APERTURE_FWHM * trace.fwhm
    gap, width = BACKGROUND_GAP_FWHM * trace.fwhm, 2 * half
    bands = {"below": (-half - gap - width, -half - gap), "above": (half + gap, half + gap + width)}
    usable = {name: limits for name, limits in bands.items()
              if _band_is_clear(center, limits, rows, others)}
    if not usable:
        return np.zeros(center.size), np.zeros(center.size), []
    weights = sum(aperture_weights(center, low, high, rows) for low, high in usable.values())
    # a leftover cosmic ray or hot pixel in a band must not dent the spectrum
    band_values = np.where(weights > 0, data, np.nan)
    median = np.nanmedian(band_values, axis=0)
    weights = np.where(np.abs(data - median) > 5 * np.sqrt(variance), 0.0, weights)
    total = np.maximum(weights.sum(axis=0), 1e-12)
    level = (weights * data).sum(axis=0) / total
    level_variance = (weights ** 2 * variance).sum(axis=0) / total ** 2
    return level, level_variance, sorted(usable)


def _band_is_clear(center, limits, rows, others: Sequence[Trace]) -> bool:
    """Inside the frame (the cutout only stops short of the band at a frame edge)
    and away from every other target."""
    low, high = center + limits[0], center + limits[1]
    if low.min() < rows[0] - 0.5 or high.max() > rows[-1] + 0.5:
        return False
    columns = np.arange(center.size)
    for other in others:
        reach = (APERTURE_FWHM + BACKGROUND_GAP_FWHM) * other.fwhm
        other_center = other(columns)
        if np.any((other_center + reach > low) & (other_center - reach < high)):
            return False
    return True


def sky_beside(ccd: CCDData, trace: Trace, others: Sequence[Trace]) -> np.ndarray | None:
    """The night sky under the aperture, per column (ADU), from wide bands on both sides of the trace
    beyond the background gap and clear of every other target; None when no row is usable.  A clipped
    mean over many rows: the flexure measurement centroids sky lines in it."""
    ny, nx = ccd.shape
    columns = np.arange(nx)
    center = trace(columns)
    inner = (APERTURE_FWHM + BACKGROUND_GAP_FWHM) * trace.fwhm
    outer = inner + SKY_WIDTH_FWHM * trace.fwhm
    low, high = int(max(0, np.floor(center.min() - outer))), int(min(ny, np.ceil(center.max() + outer) + 1))
    rows = np.arange(low, high, dtype=float)[:, None]
    distance = np.abs(rows - center[None, :])
    use = (distance >= inner) & (distance <= outer)
    for other in others:
        use &= np.abs(rows - other(columns)[None, :]) > (APERTURE_FWHM + BACKGROUND_GAP_FWHM) * other.fwhm
    if not use.any():
        return None
    data = np.where(use, np.asarray(ccd.data[low:high], dtype=np.float64), np.nan)
    # bottleneck's compiled NaN statistics: numpy's take three times as long (the live path counts)
    median = bottleneck.nanmedian(data, axis=0)
    spread = 1.4826 * bottleneck.nanmedian(np.abs(data - median), axis=0)
    data[np.abs(data - median) > SKY_CLIP_SIGMA * np.maximum(spread, 1e-12)] = np.nan
    level = np.nan_to_num(bottleneck.nanmean(data, axis=0))
    return level * 2 * APERTURE_FWHM * trace.fwhm


def extract_fractional(ccd: CCDData, trace: Trace, others: Sequence[Trace] = (),
                       subtract_background: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Boxcar of +-APERTURE_FWHM x FWHM around the trace with fractional edge pixels,
    minus the side-band background; uncertainty propagated from the pixel variance
    (the frame's uncertainty, else Poisson + read noise from GAIN and RDNOISE)."""
    rows, center, data, variance = _cutout(ccd, trace)
    half = APERTURE_FWHM * trace.fwhm
    weights = aperture_weights(center, -half, half, rows)
    flux, flux_variance = _aperture_sum(data, variance, weights)
    background = np.zeros_like(flux)
    bands = []
    if subtract_background:
        level, level_variance, bands = _background(data, variance, center, trace, others, rows)
        width = weights.sum(axis=0)
        background = level * width
        flux = flux - background
        flux_variance = flux_variance + width ** 2 * level_variance
    record = {"method": "fractional", "aperture_half_width_px": half,
              "background_bands": bands, "background_gap_px": BACKGROUND_GAP_FWHM * trace.fwhm}
    return flux, np.sqrt(flux_variance), background, record


def extract_optimal(ccd: CCDData, trace: Trace, others: Sequence[Trace], kind: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Horne (1986) optimal extraction with the traced profile model, side-band
    background, revised variance and rejection of pixels that disagree with the profile.
    The flux is the whole target's (the profile is normalized over the cutout, which
    reaches beyond 6 FWHM)."""
    gain, read_noise = _gain_and_read_noise(ccd)
    rows, center, data, variance = _cutout(ccd, trace)
    level, level_variance, bands = _background(data, variance, center, trace, others, rows)
    profile = _profile_image(trace, kind, rows, center)
    inside = np.abs(rows[:, None] - center[None, :]) <= OPTIMAL_WINDOW_FWHM * trace.fwhm
    signal_data = data - level[None, :]
    flux, _, _, _ = extract_fractional(ccd, trace, others)
    use = inside.copy()
    for _ in range(OPTIMAL_ITERATIONS):
        model_variance = (read_noise / gain) ** 2 + np.clip(
            flux[None, :] * profile + level[None, :], 0.0, None) / gain
        use = inside & ((signal_data - flux[None, :] * profile) ** 2
                        <= OPTIMAL_CLIP_SIGMA ** 2 * model_variance)
        weight = np.where(use, profile / model_variance, 0.0)
        norm = np.maximum((weight * profile).sum(axis=0), 1e-30)
        flux = (weight * signal_data).sum(axis=0) / norm
    flux_variance = 1.0 / norm + level_variance * ((weight.sum(axis=0) / norm) ** 2)
    background = level * np.where(inside, 1.0, 0.0).sum(axis=0)
    record = {"method": "optimal", "window_half_width_px": OPTIMAL_WINDOW_FWHM * trace.fwhm,
              "background_bands": bands, "rejected_pixels": int((inside & ~use).sum())}
    return flux, np.sqrt(flux_variance), background, record


def _profile_image(trace: Trace, kind: str, rows: np.ndarray, center: np.ndarray) -> np.ndarray:
    """The traced spatial profile at every pixel, each column summing to one."""
    offsets = rows[:, None] - center[None, :]
    if kind == "gaussian":
        image = np.exp(-0.5 * (offsets / trace.shape["stddev"]) ** 2)
    else:
        image = (1.0 + (offsets / trace.shape["gamma"]) ** 2) ** (-trace.shape["alpha"])
    return image / image.sum(axis=0, keepdims=True)


# --- the block ---------------------------------------------------------------------------

def extract(ccd: CCDData, settings: ReductionSettings) -> tuple[list[ExtractedSpectrum], dict]:
    """Identify, trace and extract every target of a reduced 2D spectrum.

    Record: {"block": "extract", "method", "model", "profile_noise", "candidates",
    "rejected": [{"row", "reason"}], "targets": [{"number", "center", "amplitude",
    "fwhm", "snr", "trace": {...}, "extraction": {...}}]}.
    """
    with stage("targets found and traced"):
        targets, record = identify_targets(ccd, settings)
        traced, bins = [], trace_bins(ccd)
        for target, summary in zip(targets, record["targets"]):
            try:
                traced.append((target, trace_target(ccd, target, settings, bins), summary))
            except ReductionError as error:
                record["rejected"].append({"row": round(target.center), "reason": str(error)})
    record["targets"] = [summary for _, _, summary in traced]
    if not traced:
        raise NoTargetsError("no target found in the spatial profile")
    traces = [trace for _, trace, _ in traced]
    spectra = []
    for target, trace, summary in traced:
        others = [other for other in traces if other is not trace]
        with stage("extraction"):
            if settings.extraction == "optimal":
                flux, error, background, how = extract_optimal(ccd, trace, others, settings.target_fit_model)
            else:
                flux, error, background, how = extract_fractional(ccd, trace, others)
        summary.update(trace=_trace_record(trace), extraction=how, frame_shape=list(ccd.shape))
        with stage("sky beside the target"):
            sky = sky_beside(ccd, trace, others)
        spectra.append(ExtractedSpectrum(target.number, flux, error, background, trace, summary, sky=sky))
    record.update(block="extract", method=settings.extraction, model=settings.target_fit_model)
    return spectra, record


def extract_arc(arc: CCDData, science: ExtractedSpectrum) -> tuple[ExtractedSpectrum, dict]:
    """The arc summed through the science target's aperture (no background: the
    lamp fills the slit).  The arc must be reduced like the science frame."""
    shape = science.record.get("frame_shape")
    if shape is not None and list(arc.shape) != shape:
        raise reduce.IncompatibleCalibrationError(f"arc shape {arc.shape} != science frame {shape}")
    flux, error, background, how = extract_fractional(arc, science.trace, subtract_background=False)
    record = {"block": "extract_arc", "target": science.number, "trace": _trace_record(science.trace),
              "extraction": how}
    return ExtractedSpectrum(science.number, flux, error, background, science.trace, record), record


def _trace_record(trace: Trace) -> dict:
    return {"coefficients": list(trace.coefficients), "basis": "power", "fwhm_px": trace.fwhm,
            "shape": trace.shape, "rms_px": trace.rms, "samples": trace.samples,
            "rejected_samples": trace.rejected}


def spectrum_ccd(spectrum: ExtractedSpectrum, header) -> CCDData:
    """A 1D CCDData of ``spectrum`` for writing, with goodman-pipeline trace keywords."""
    out = header.copy()
    for keyword in ("NAXIS2", reduce.PREFIX_KEY):
        out.remove(keyword, ignore_missing=True)
    out["GSP_TMOD"] = ("Polynomial1D", "model of the target trace")
    out["GSP_TORD"] = (len(spectrum.trace.coefficients) - 1, "degree of the trace model")
    for power, value in enumerate(spectrum.trace.coefficients):
        out[f"GSP_TC{power:02d}"] = (value, f"trace coefficient c{power}")
    out["GSP_TERR"] = (spectrum.trace.rms, "RMS error of target trace")
    out["GSP_FWHM"] = (spectrum.trace.fwhm, "target FWHM along the slit [px]")
    out.add_history(f"GSP Live: extracted target {spectrum.number}")
    return CCDData(spectrum.flux.astype(np.float32), unit="adu", header=out,
                   uncertainty=StdDevUncertainty(spectrum.uncertainty.astype(np.float32)))
