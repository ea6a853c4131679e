"""Callbacks of the Data page (layout: pages/data.py; what both draw: components/data_view.py), one
module per concern.

Live updates are cheap: every 0.25 s the page asks db.queries.global_change_stamp
(two index lookups); only when it moved is the user's own change_stamp computed,
and the index is re-queried only when that one changed; what a callback draws is sent only when it
differs from what the page shows (components.data_view.digest).
Everything is read through auth.permissions: a file the user may not see is
"not found", and only users who may change a file get the buttons that do.
"""
from callbacks.data import (
    actions,
    comments,
    compare,
    delete,
    file_card,
    fits_header,
    index,
    selection,
    signal_to_noise,
    viewer,
)

CONCERNS = (index, selection, file_card, fits_header, viewer, compare, actions, delete, comments, signal_to_noise)


def register(app) -> None:
    for concern in CONCERNS:
        concern.register(app)
