"""The reduction chain as data: which step takes which file, what it waits for, what follows.

One table (``STEPS``), in the spirit of BANZAI's stage lists: the live tasks, the offline
twin, the Data page's action buttons and the API's manual triggers all read it.  Adding a
step is one entry here, one task in ``live/tasks.py`` and its science in ``pipeline/``.
Pure: no web, no database.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pipeline import headers, standards
from pipeline.datatypes import DataType

SPECTROSCOPY = "Spectroscopy"
ARC_OBSTYPES = headers.obstypes_of("arc")
STANDARD = "standard"  # the frame kind of a spectrophotometric standard star's spectrum


def frame_kind(obstype: str, technique: str | None, object_name: str | None = None,
               standard: str | bool | None = None) -> str:
    """``pipeline.headers.kind``, with science spectra of a standard star told apart: a frame is a
    standard when its OBJECT names a shipped table, or when a user marked it (``standard``: the star's
    name, or False for "not a standard")."""
    kind = headers.kind(obstype, technique)
    if kind != "science" or technique != SPECTROSCOPY or standard is False:
        return kind
    return STANDARD if standard or standards.find_standard(object_name or "") is not None else kind


@dataclass(frozen=True)
class Step:
    """One process block as the job layer runs it.

    ``kinds`` are frame kinds (``pipeline.headers.kind``) of the file's raw original;
    ``needs`` are what the step waits for (a frame whose needs are missing is parked,
    and woken when a step ``provides`` one); ``then`` are the steps its products go on to (each
    that takes them; the first is the chain's main line); a step with a ``setting`` runs by itself
    only when the proposal's setting of that name is on.  A step that ``gathers`` works on every
    exposure of a target: live it runs after each one (a new version each time), offline once,
    when every frame of the night is done.
    """

    name: str
    expects: str  # what its input is, in words ("… is not a reduced science spectrum (reduce it first)")
    title: str  # the block, in messages ("Reduce of 0014.fits: done")
    label: str  # its button on the Data page
    icon: str
    takes: tuple[DataType, ...]
    kinds: frozenset[str]
    makes: DataType
    spectroscopy_only: bool = False
    needs: tuple[str, ...] = ()
    provides: dict[str, str] = field(default_factory=dict)  # frame kind -> what it provides
    then: tuple[str, ...] = ()
    setting: str | None = None
    choices: tuple[str, ...] = ()  # what a user may choose when triggering it by hand
    manual_params: dict = field(default_factory=dict)  # what a trigger by hand adds
    route: str = ""  # the API's trigger, ``POST /api/files/<route>`` with ``{"id": …, <choices>}``
    gathers: bool = False

    def accepts(self, data_type: int, kind: str, technique: str | None) -> bool:
        """True when a file of this data type, frame kind and technique is this step's input."""
        if data_type not in self.takes or kind not in self.kinds:
            return False
        return not self.spectroscopy_only or technique == SPECTROSCOPY


MASTER_BIAS, MASTER_FLAT, ARC, SENSITIVITY = "master bias", "master flat", "arc", "sensitivity function"
SPECTRA = frozenset({"science", STANDARD})

STEPS: dict[str, Step] = {step.name: step for step in (
    Step("calibrations", expects="a raw BIAS or FLAT frame",
         title="Build master calibrations", label="Build Master Calibrations", icon="layers",
         takes=(DataType.RAW,), kinds=frozenset({"bias", "flat"}), makes=DataType.MASTER,
         provides={"bias": MASTER_BIAS, "flat": MASTER_FLAT}, manual_params={"force": True}, route="calibrations/"),
    Step("reduce", expects="a raw science, arc or imaging frame",
         title="Reduce", label="Reduce Raw File", icon="gear",
         takes=(DataType.RAW,), kinds=frozenset({"arc", "imaging"}) | SPECTRA, makes=DataType.REDUCED,
         needs=(MASTER_BIAS, MASTER_FLAT), provides={"arc": ARC}, then=("extract",), manual_params={"force": True},
         route="reduce/"),
    Step("extract", expects="a reduced science spectrum (reduce it first)",
         title="Extract target", label="Extract Target", icon="bullseye",
         takes=(DataType.REDUCED,), kinds=SPECTRA, makes=DataType.EXTRACTED, spectroscopy_only=True,
         then=("calibrate_wavelength",), choices=("arc_id",), route="spectrum/extract/"),
    Step("calibrate_wavelength", expects="an extracted science spectrum (extract it first)",
         title="Calibrate wavelength", label="Calibrate Wavelength", icon="rulers",
         takes=(DataType.EXTRACTED,), kinds=SPECTRA, makes=DataType.WAVELENGTH_CALIBRATED, spectroscopy_only=True,
         needs=(ARC,), then=("sensitivity", "calibrate_flux", "combine"), choices=("arc_id", "lamp"),
         route="spectrum/calibrate/wavelength/"),
    # A standard star's calibrated spectrum becomes the sensitivity function of its configuration
    # (a calibration product, like the masters); science spectra are flux calibrated with it.
    Step("sensitivity", expects="a wavelength-calibrated standard star",
         title="Sensitivity function", label="Build Sensitivity Function", icon="graph-up",
         takes=(DataType.WAVELENGTH_CALIBRATED,), kinds=frozenset({STANDARD}), makes=DataType.MASTER,
         spectroscopy_only=True, provides={STANDARD: SENSITIVITY}, route="spectrum/sensitivity/"),
    Step("calibrate_flux", expects="a wavelength-calibrated science spectrum (calibrate its wavelengths first)",
         title="Calibrate flux", label="Calibrate Flux", icon="brightness-high",
         takes=(DataType.WAVELENGTH_CALIBRATED,), kinds=frozenset({"science"}), makes=DataType.FLUX_CALIBRATED,
         spectroscopy_only=True, needs=(SENSITIVITY,), then=("combine",), choices=("standard_id",),
         setting="flux_calibration", route="spectrum/calibrate/flux/"),
    # The exposures of one target, at the most calibrated level two of them reach (pipeline.matching).
    Step("combine", expects="a wavelength- or flux-calibrated science spectrum",
         title="Combine exposures", label="Combine Exposures of the Target", icon="stack",
         takes=(DataType.WAVELENGTH_CALIBRATED, DataType.FLUX_CALIBRATED), kinds=frozenset({"science"}),
         makes=DataType.COMBINED, spectroscopy_only=True, gathers=True, route="spectrum/combine/"),
)}



# Needs a proposal's reduction settings switch off (pipeline.settings): they are then never waited for.
IGNORED_BY = {MASTER_BIAS: "ignore_bias", MASTER_FLAT: "ignore_flats"}


def needs_of(kind: str, technique: str | None, settings) -> list[str]:
    """What a raw frame of this kind waits for along its whole chain with ``settings`` (a
    ``ReductionSettings``), in chain order: the chain stops where a step's setting is off (as live),
    and needs the settings ignore are left out."""
    needs, step = [], first_step(kind, technique)
    while step is not None and (step.setting is None or getattr(settings, step.setting)):
        needs += [need for need in step.needs if need not in needs
                  and not (need in IGNORED_BY and getattr(settings, IGNORED_BY[need]))]
        step = next_step(step, kind, technique)
    return needs


def first_step(kind: str, technique: str | None = None) -> Step | None:
    """The step a newly ingested raw frame of this kind starts with (None: not reduced automatically)."""
    return step_for(DataType.RAW, kind, technique)


def step_for(data_type: int, kind: str, technique: str | None) -> Step | None:
    """The step that takes a file of this data type and kind, if any."""
    return next((step for step in STEPS.values() if step.accepts(data_type, kind, technique)), None)


def next_steps(step: Step, kind: str, technique: str | None) -> list[Step]:
    """Every step a product of ``step`` (for a frame of this kind) goes on to, live and offline."""
    return [STEPS[name] for name in step.then if STEPS[name].accepts(step.makes, kind, technique)]


def next_step(step: Step, kind: str, technique: str | None) -> Step | None:
    """The chain's main line after ``step`` for a frame of this kind (the first of ``next_steps``)."""
    return next(iter(next_steps(step, kind, technique)), None)


def rerun_step(data_type: int, kind: str) -> Step | None:
    """The step that re-makes a product of this type and frame kind: the step that made it (None for raw
    files, for arcs' 1D products, which are re-made with their science, and for what a step that gathers
    exposures made: it is made again by combining, as the exposures or their choice change)."""
    if data_type == DataType.RAW or (kind == "arc" and data_type > DataType.REDUCED):
        return None
    step = next((step for step in STEPS.values() if step.makes == data_type and kind in step.kinds), None)
    return None if step is None or step.gathers else step
