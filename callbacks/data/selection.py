"""Which file is shown: picked in an index or a tab (answered in the browser), highlighted there,
followed to the newest frame's most calibrated file as the instrument writes it and the chain reduces it
(:func:`follow_moves`, answered by the change feed itself: callbacks/data/changes.py), and kept in the URL
(``/?id=``)."""
from __future__ import annotations

from dash import ALL, Input, Output, State

from components import ids

# Picking a file is answered in the browser: no round trip before the panels ask for it.
PICK_JS = """
function(clicks, selected) {
    const context = window.dash_clientside.callback_context;
    const trigger = context.triggered_id;
    const value = context.triggered.length ? context.triggered[0].value : null;
    if (!trigger || typeof trigger !== 'object' || !value || trigger.index === selected) {
        return window.dash_clientside.no_update;
    }
    return trigger.index;
}
"""

# Highlight the selected file (and its raw parent) without asking the server again.  The raw parent comes
# with the file card ({file, root}): while the card of a newly shown file is on its way (slow while a frame
# runs) the previous file's parent stays dark.  After the index just given is drawn: a callback runs first.
HIGHLIGHT_JS = """
function(root, selected, _observed, _calibrations) {
    const parent = root && String(root.file) === String(selected) ? String(root.root) : null;
    window.requestAnimationFrame(function() {
        document.querySelectorAll('.gsp-index-item').forEach(function(item) {
            const inner = item.querySelector('[data-file-id]');
            if (!inner) { return; }
            const id = inner.getAttribute('data-file-id');
            const on = id === parent || id === String(selected);
            item.classList.toggle('active', on);
            item.setAttribute('aria-current', on ? 'true' : 'false');
        });
    });
    return window.dash_clientside.no_update;
}
"""

URL_SYNC_JS = """
function(selected, shown, following) {
    const noUpdate = window.dash_clientside.no_update;
    if (selected === null || selected === undefined) { return noUpdate; }
    const url = new URL(window.location.href);
    if (url.pathname !== '/') { return noUpdate; }
    if (url.searchParams.get('id') === String(selected)) { return noUpdate; }
    // A file picked by hand is a step "Back" returns to; one shown by Follow is not.
    const followed = following && shown && String(selected) === String(shown.file);
    const had = url.searchParams.has('id');
    url.searchParams.set('id', String(selected));
    if (had && !followed) { window.history.pushState({}, '', url); }
    else { window.history.replaceState({}, '', url); }
    return String(selected);
}
"""


def follow_step(now: dict | None, shown: dict | None, following, selected) -> tuple:
    """(file to show or None, what Follow shows now or None when that did not change) when the catalogue
    changed. Follow shows the newest frame's most calibrated file (``now``, from components.data_view.followed): a
    new frame at once, and each better product of it as it is made, unless the user has picked another file
    since (``selected`` is not what Follow showed last, ``shown``)."""
    if now is None or now == shown:
        return None, None
    if shown is None or not following or now["file"] == selected:
        return None, now
    new_frame = now["frame"] != shown["frame"]
    return (now["file"] if new_frame or selected == shown["file"] else None), now


def follow_moves(now: dict | None, following, shown, selected, page) -> dict:
    """What Follow changes on the page after the catalogue changed, each only when it changes: the file to show
    ("select"), what Follow shows now ("followed"), and the Observed index's page ("page": the newest frame is on
    the first)."""
    show, now = follow_step(now, shown, following, selected)
    moves = {} if now is None else {"followed": now}
    if show is not None:
        moves["select"] = show
        if page != 1:
            moves["page"] = 1
    return moves


def register(app) -> None:
    app.clientside_callback(PICK_JS, Output(ids.DATA_SELECTED, "data"),
                            Input({"type": ids.DATA_PICK, "src": ALL, "index": ALL}, "n_clicks"),
                            State(ids.DATA_SELECTED, "data"), prevent_initial_call=True)

    app.clientside_callback(HIGHLIGHT_JS, Output(ids.DATA_HIGHLIGHT, "children"),
                            Input(ids.DATA_ROOT, "data"), Input(ids.DATA_SELECTED, "data"),
                            Input(ids.DATA_OBSERVED_INDEX, "children"), Input(ids.DATA_CALIB_INDEX, "children"))

    app.clientside_callback(URL_SYNC_JS, Output(ids.DATA_URL_SYNC, "children"), Input(ids.DATA_SELECTED, "data"),
                            State(ids.DATA_FOLLOWED, "data"), State(ids.DATA_FOLLOW, "value"))
