"""Per-proposal data reduction settings: one definition shared by the database,
the forms, the API and the offline twin."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

COSMIC_RAY_CHOICES = ("default", "dcr", "lacosmic", "none")
TECHNIQUE_CHOICES = ("Spectroscopy", "Imaging")
FLAT_NORMALIZATION_CHOICES = ("mean", "simple", "full")
EXTRACTION_CHOICES = ("fractional", "optimal")
TARGET_FIT_CHOICES = ("moffat", "gaussian")


class SettingsError(ValueError):
    """A setting is out of range or not one of its choices."""


@dataclass(frozen=True)
class ReductionSettings:
    saturation_threshold: float = 1.0  # percent of saturated pixels that rejects a flat
    cosmic_ray_rejection: str = "default"
    technique: str = "Spectroscopy"
    ignore_bias: bool = False
    ignore_flats: bool = False
    min_bias: int = 10
    min_flats: int = 10
    flat_normalization: str = "simple"
    flat_normalization_order: int = 15
    extraction: str = "fractional"
    target_fit_model: str = "moffat"
    max_targets: int = 3
    flux_calibration: bool = True  # flux-calibrate science automatically once a standard exists
    flexure_correction: bool = True  # shift each science frame's arc solution by its sky lines' offset
    telluric_correction: bool = True  # divide flux-calibrated spectra by the standard's telluric transmission

    def __post_init__(self):
        problems = validate(asdict(self))
        if problems:
            raise SettingsError("; ".join(f"{k}: {v}" for k, v in problems.items()))

    @classmethod
    def from_dict(cls, data: dict | None) -> "ReductionSettings":
        """Build from a (partial) dict; unknown keys are an error."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


_CHOICES = {
    "cosmic_ray_rejection": COSMIC_RAY_CHOICES,
    "technique": TECHNIQUE_CHOICES,
    "flat_normalization": FLAT_NORMALIZATION_CHOICES,
    "extraction": EXTRACTION_CHOICES,
    "target_fit_model": TARGET_FIT_CHOICES,
}
_INT_RANGES = {
    "min_bias": (1, 500),
    "min_flats": (1, 500),
    "flat_normalization_order": (1, 50),
    "max_targets": (1, 10),
}


def validate(data: dict) -> dict[str, str]:
    """Return {field: message} for every invalid value in ``data`` (empty when valid)."""
    problems: dict[str, str] = {}
    for name, choices in _CHOICES.items():
        if name in data and data[name] not in choices:
            problems[name] = f"must be one of {', '.join(choices)}"
    for name, (low, high) in _INT_RANGES.items():
        if name in data:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int):
                problems[name] = "must be a whole number"
            elif not low <= value <= high:
                problems[name] = f"must be between {low} and {high}"
    if "saturation_threshold" in data:
        value = data["saturation_threshold"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
            problems["saturation_threshold"] = "must be a percentage above 0 and at most 100"
    for name in ("ignore_bias", "ignore_flats", "flux_calibration", "flexure_correction", "telluric_correction"):
        if name in data and not isinstance(data[name], bool):
            problems[name] = "must be true or false"
    return problems
