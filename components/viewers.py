"""The figures of FITS files as the Data and Account pages and their callbacks use them.

The figures themselves are in ``figures/`` (shared with ``GET /api/files/visualize/``); this module
keeps the names these pages import.
"""
from figures.interactive import figure_for_file
from figures.png import png_for_file
from figures.style import COLORMAPS
from pipeline.products import ProductError as ViewerError  # a file that cannot be read, or drawn as asked

__all__ = ["COLORMAPS", "ViewerError", "figure_for_file", "png_for_file"]
