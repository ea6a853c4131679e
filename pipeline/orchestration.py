"""What runs after ingestion (job layer): calibration frames -> masters; arcs, science and
imaging frames -> reduce (which chains extract and wavelength calibration, see tasks)."""
from __future__ import annotations

from db import db
from pipeline import headers
from pipeline.jobs import enqueue

FIRST_JOB = {"bias": "calibrations", "flat": "calibrations", "arc": "reduce", "science": "reduce",
             "imaging": "reduce"}


def on_ingested(file) -> None:
    """Enqueue the first job a newly catalogued raw file calls for (or say why there is none)."""
    kind = headers.kind(file.obstype, file.technique)
    if kind in FIRST_JOB:
        enqueue(FIRST_JOB[kind], file_id=file.id)
        return
    file.state_reason = (f"OBSTYPE {file.obstype} is not reduced automatically; "
                         "reclassify it (e.g. as COMP) to reduce it.")
    db.session.commit()
