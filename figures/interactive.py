"""The interactive (Plotly) figure of a FITS file, of the kind its content asks for."""
from __future__ import annotations

from figures.image import image_figure
from figures.pixels import DEFAULT_MAX_PIXELS
from figures.sensitivity import sensitivity_figure
from figures.spectrum import spectrum_figure
from pipeline.products import read_product


def figure_for_file(path, *, data_type=None, colormap: str = "gray", zmin=None, zmax=None, percentiles=None,
                    show_saturated: bool = False, saturation=None, title: str = "",
                    max_pixels: int = DEFAULT_MAX_PIXELS, theme: str = "dark", overlays=(),
                    redshift: float = 0.0, show_title: bool = True, height: int | None = None, compare=()):
    """The interactive figure of a FITS file (image or spectrum; ``compare``: (label, path) of other
    spectra to draw over it). Raises ProductError (FigureError when it cannot be drawn as asked)."""
    product = read_product(path)
    if product.extras.get("points"):
        return sensitivity_figure(product, theme=theme, title=title, show_title=show_title, height=height)
    if product.kind == "image":
        return image_figure(product, colormap=colormap, zmin=zmin, zmax=zmax, percentiles=percentiles,
                            show_saturated=show_saturated, saturation=saturation, title=title,
                            max_pixels=max_pixels, theme=theme, show_title=show_title, height=height)
    return spectrum_figure(product, data_type=data_type, title=title, theme=theme, overlays=overlays,
                           redshift=redshift, show_title=show_title, height=height, compare=compare)
