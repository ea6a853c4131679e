"""What a catalogued file is: the ``data_type`` of the public API (its own module so that the header
classification and the chain can both use it)."""
from __future__ import annotations

from enum import IntEnum


class DataType(IntEnum):
    """What a catalogued file is; the numbers are part of the public API (``data_type``)."""

    RAW = 0
    MASTER = 1
    REDUCED = 2
    EXTRACTED = 3
    WAVELENGTH_CALIBRATED = 4
    FLUX_CALIBRATED = 5
    COMBINED = 6  # several exposures of one target, co-added

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {DataType.RAW: "Raw", DataType.MASTER: "Calibration", DataType.REDUCED: "Reduced",
           DataType.EXTRACTED: "Extracted", DataType.WAVELENGTH_CALIBRATED: "Wavelength Calibrated",
           DataType.FLUX_CALIBRATED: "Flux Calibrated", DataType.COMBINED: "Combined"}
