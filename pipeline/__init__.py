"""The science of GSP Live: pure reduction blocks (no web, no database).

Each block takes data + a :class:`pipeline.settings.ReductionSettings` and
returns data + a record (a plain dict) of what it did.  The job layer
(``live/``) is the only bridge to the catalogue; nothing here imports it.
"""

from astropy.utils import iers

# Nights can be dated past the IERS tables astropy ships, and the observatory runs behind a
# VPN: no time conversion may ever reach for the network.
iers.conf.auto_download = False
