"""The reduction chain as data: which step takes which file, what it waits for, what follows.

One table (``STEPS``), in the spirit of BANZAI's stage lists: the live tasks, the offline
twin, the Data page's action buttons and the API's manual triggers all read it.  Adding a
step is one entry here, one task in ``live/tasks.py`` and its science in ``pipeline/``.
Pure: no web, no database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class DataType(IntEnum):
    """What a catalogued file is; the numbers are part of the public API (``data_type``)."""

    RAW = 0
    MASTER = 1
    REDUCED = 2
    EXTRACTED = 3
    WAVELENGTH_CALIBRATED = 4
    FLUX_CALIBRATED = 5

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {DataType.RAW: "Raw", DataType.MASTER: "Calibration", DataType.REDUCED: "Reduced",
           DataType.EXTRACTED: "Extracted", DataType.WAVELENGTH_CALIBRATED: "Wavelength Calibrated",
           DataType.FLUX_CALIBRATED: "Flux Calibrated"}

SPECTROSCOPY = "Spectroscopy"
ARC_OBSTYPES = ("COMP", "ARC")


@dataclass(frozen=True)
class Step:
    """One process block as the job layer runs it.

    ``kinds`` are frame kinds (``pipeline.headers.kind``) of the file's raw original;
    ``needs`` are what the step waits for (a frame whose needs are missing is parked,
    and woken when a step ``provides`` one); ``then`` is the step its products go on to.
    """

    name: str
    title: str  # the block, in messages ("Reduce of 0014.fits: done")
    label: str  # its button on the Data page
    icon: str
    takes: DataType
    kinds: frozenset[str]
    makes: DataType
    spectroscopy_only: bool = False
    needs: tuple[str, ...] = ()
    provides: dict[str, str] = field(default_factory=dict)  # frame kind -> what it provides
    then: str | None = None
    choices: tuple[str, ...] = ()  # what a user may choose when triggering it by hand
    manual_params: dict = field(default_factory=dict)  # what a trigger by hand adds

    def accepts(self, data_type: int, kind: str, technique: str | None) -> bool:
        """True when a file of this data type, frame kind and technique is this step's input."""
        if data_type != self.takes or kind not in self.kinds:
            return False
        return not self.spectroscopy_only or technique == SPECTROSCOPY


MASTER_BIAS, MASTER_FLAT, ARC = "master bias", "master flat", "arc"

STEPS: dict[str, Step] = {step.name: step for step in (
    Step("calibrations", title="Build master calibrations", label="Build Master Calibrations", icon="layers",
         takes=DataType.RAW, kinds=frozenset({"bias", "flat"}), makes=DataType.MASTER,
         provides={"bias": MASTER_BIAS, "flat": MASTER_FLAT}, manual_params={"force": True}),
    Step("reduce", title="Reduce", label="Reduce Raw File", icon="gear",
         takes=DataType.RAW, kinds=frozenset({"arc", "science", "imaging"}), makes=DataType.REDUCED,
         needs=(MASTER_BIAS, MASTER_FLAT), provides={"arc": ARC}, then="extract", manual_params={"force": True}),
    Step("extract", title="Extract target", label="Extract Target", icon="bullseye",
         takes=DataType.REDUCED, kinds=frozenset({"science"}), makes=DataType.EXTRACTED, spectroscopy_only=True,
         then="calibrate_wavelength", choices=("arc_id",)),
    Step("calibrate_wavelength", title="Calibrate wavelength", label="Calibrate Wavelength", icon="rulers",
         takes=DataType.EXTRACTED, kinds=frozenset({"science"}), makes=DataType.WAVELENGTH_CALIBRATED,
         spectroscopy_only=True, needs=(ARC,), choices=("arc_id", "lamp")),
)}

# Products a user may re-make with the current settings (arcs' products are re-made with their science).
RERUNNABLE = {DataType.MASTER: "calibrations", DataType.REDUCED: "reduce", DataType.EXTRACTED: "extract",
              DataType.WAVELENGTH_CALIBRATED: "calibrate_wavelength"}


def first_step(kind: str, technique: str | None = None) -> Step | None:
    """The step a newly ingested raw frame of this kind starts with (None: not reduced automatically)."""
    return step_for(DataType.RAW, kind, technique)


def step_for(data_type: int, kind: str, technique: str | None) -> Step | None:
    """The step that takes a file of this data type and kind, if any."""
    return next((step for step in STEPS.values() if step.accepts(data_type, kind, technique)), None)


def next_step(step: Step, kind: str, technique: str | None) -> Step | None:
    """What a product of ``step`` (for a frame of this kind) goes on to, live and offline."""
    follower = STEPS.get(step.then) if step.then else None
    return follower if follower is not None and follower.accepts(step.makes, kind, technique) else None


def rerun_step(data_type: int, obstype: str) -> Step | None:
    """The step that re-makes a product of this type (None for raw files and arcs' 1D products)."""
    if data_type in (DataType.EXTRACTED, DataType.WAVELENGTH_CALIBRATED) and obstype.upper() in ARC_OBSTYPES:
        return None
    name = RERUNNABLE.get(DataType(data_type)) if data_type in DataType._value2member_map_ else None
    return STEPS.get(name) if name else None
