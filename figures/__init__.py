"""Figures of FITS products: 2D images and 1D spectra, interactive (Plotly, ``figures.interactive``) or
static (PNG through matplotlib's Agg, ``figures.png``), and the line lists drawn over spectra.

Shared by the Data page and ``GET /api/files/visualize/``, so it imports only ``pipeline``.

2D frames are shown with ZScale limits by default, block-averaged to at most ``max_pixels`` display
pixels; the axes stay in the file's own (0-based) pixels.  1D spectra are flux against wavelength
when the header carries a wavelength WCS, against pixels otherwise; a 1-sigma band comes from the
``UNCERT`` HDU and, for arcs with a ``LINES`` HDU, the lines used are marked and their residuals
plotted with the RMS; a flux-calibrated spectrum with a ``TELLURIC`` HDU can show the transmission it was
divided by (overlay ``telluric``).  A sensitivity function is drawn with the standard's bands and the fit.
"""
