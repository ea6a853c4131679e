"""The words on a figure: titles, axis titles, and the summaries of a wavelength solution or a
sensitivity function, read from the product's header and tables."""
from __future__ import annotations

import numpy as np

from pipeline import flexure
from pipeline.chain import ARC_OBSTYPES
from pipeline.datatypes import DataType
from pipeline.products import Product

IMAGING_MARKERS = ("IMAGING", "NO_GRATING", "<NO GRATING>")
SENSITIVITY_AXIS = "2.5 log\u2081\u2080 S (mag)"
PIXEL_AXIS = "Dispersion Axis (Pixels)"
WAVELENGTH_AXIS = "Wavelength (\u00c5)"


def is_spectroscopic(header) -> bool:
    """True unless the header says imaging (WAVMODE IMAGING / no grating)."""
    return all(str(header.get(key, "")).strip().upper() not in IMAGING_MARKERS for key in ("WAVMODE", "GRATING"))


def is_arc(header) -> bool:
    return str(header.get("OBSTYPE", "")).strip().upper() in ARC_OBSTYPES


def is_flux_calibrated(data_type) -> bool:
    return data_type is not None and int(data_type) >= DataType.FLUX_CALIBRATED


def image_axis_titles(header) -> tuple[str, str]:
    if is_spectroscopic(header):
        return PIXEL_AXIS, "Spatial Axis (Pixels)"
    return "X (Pixels)", "Y (Pixels)"


def flux_title(header, data_type=None) -> str:
    unit = str(header.get("BUNIT", "")).strip()
    if not unit:
        return "Flux" if is_flux_calibrated(data_type) else "Flux (ADU)"
    if unit.lower() == "adu" and not is_flux_calibrated(data_type):
        return "Flux (ADU)"
    return f"Flux ({unit})"


def default_title(header, name: str = "") -> str:
    parts = [str(header.get(k, "")).strip() for k in ("OBSTYPE", "OBJECT")]
    first = " ".join(p for p in parts if p) or name
    second = str(header.get("PROPOSAL", header.get("PROPID", ""))).strip()
    return f"{first}<br>{second}" if second else first


def product_title(product: Product) -> str:
    """What a figure of the product is called unless the caller names it."""
    return sensitivity_title(product) if product.extras.get("points") else default_title(product.header,
                                                                                          product.name)


def flexure_text(header) -> str:
    """The flexure correction beside the RMS (header cards of pipeline.wavelength.flexure_cards)."""
    if "GSP_FLXA" not in header:
        return ""
    return " \u00b7 " + flexure.summary({"applied": header["GSP_FLXA"], "shift_px": header.get("GSP_FLEX"),
                                         "uncertainty_px": header.get("GSP_FLXE"), "n_lines": header.get("GSP_FLXN"),
                                         "reason": header.get("GSP_FLXR")})


def rms_text(lines: dict, header=None) -> str:
    """'RMS 0.019 Å · 60 lines used, 5 rejected', and the verdict when the solution is poor."""
    residual = lines.get("residual")
    rejected = len((lines.get("rejected") or {}).get("wavelength", []))
    if residual is None or len(residual) == 0:
        text = f"{len(lines.get('wavelength', []))} lines used, {rejected} rejected"
    else:
        finite = residual[np.isfinite(residual)]
        rms = float(np.sqrt(np.mean(finite ** 2))) if finite.size else float("nan")
        text = f"RMS {rms:.3f} \u00c5 \u00b7 {finite.size} lines used, {rejected} rejected"
    if header is not None and str(header.get("GSP_WQUA", "")).strip() == "poor":
        text += " \u00b7 POOR SOLUTION"
    return text


def sensitivity_text(points: dict) -> str:
    used = points["used"].astype(bool)
    residual = (points["mag"] - points["fit"])[used]
    rms = float(np.sqrt(np.mean(residual ** 2))) if residual.size else float("nan")
    return f"RMS {rms:.3f} mag \u00b7 {int(used.sum())} bands used, {int((~used).sum())} rejected or masked"


def sensitivity_title(product: Product) -> str:
    star = str(product.header.get("GSP_STD", "")).strip()
    return f"Sensitivity function{': ' + star if star else ''}"
