"""The overlays of lines a spectrum may carry, as the Data page offers them (the line lists and their
drawing are ``figures.overlays``)."""
from figures.overlays import OVERLAYS, REDSHIFT_RANGE

__all__ = ["OVERLAYS", "REDSHIFT_RANGE"]
