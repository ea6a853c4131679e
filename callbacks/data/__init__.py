"""Callbacks of the Data page (layout: pages/data.py; what both draw: components/data_view.py), one
module per concern.

Live updates are cheap: the page waits on the server for a change the user may see (callbacks/data/changes.py;
live/changes.py: one thread per web process reads db.queries.global_change_stamp, two index lookups, while pages
wait, and a waiting request reads its user's own change_stamp only when that one moved); the indexes are
re-queried only when the user's stamp changed; what a callback draws is sent only when it
differs from what the page shows (components.data_view.digest).
Everything is read through auth.permissions: a file the user may not see is
"not found", and only users who may change a file get the buttons that do.
"""
from callbacks.data import (
    actions,
    changes,
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

CONCERNS = (changes, index, selection, file_card, fits_header, viewer, compare, actions, delete, comments,
            signal_to_noise)


def register(app) -> None:
    for concern in CONCERNS:
        concern.register(app)
