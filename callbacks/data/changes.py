"""The Data page's change feed: the page waits on the server for the next change the user may see, and the
answer says where Follow goes (``GET /data/changes``, one request at a time per page).

The server answers the moment a file the user may see is added or changed (live/changes.py: one thread per web
process reads the catalogue-wide stamp while pages wait) with the new stamp and, when Follow moves, the file to
show (callbacks/data/selection.py decides, from the page's state sent along).  In the browser a Follow move is
applied at once and the new stamp, which redraws the indexes, the card and the night panel, after the moved
file is drawn, and at most every STAMP_SPACING_MS; while Follow shows a frame whose spectra are on their way
(the answer says it "expects" a move) later stamps wait for that move: the new spectrum is drawn before anything
else is asked (requests answered side by side share the web process, the workers' cores and the page's one
thread).  A timed poll asked the same of a Dash callback before: half a poll interval of waiting, and a poll
that left while another was on its way made Dash drop the first one's answer."""
from __future__ import annotations

import json

from dash import Input, Output, State
from flask import jsonify, request
from flask_login import current_user

from callbacks.data.selection import follow_moves
from components import ids
from components.data_view import chain_running, followed
from db.queries import is_number
from live.changes import stamp_after, wait_seconds

WAIT_S = 20  # a page's wait: long enough to cost nothing, short enough for a closed page to free its thread
RETRY_MS = 2000  # after a failed wait (signed out, the server restarting)
STAMP_SPACING_MS = 250
HOLD_MS = 2000  # the stamp waits this long at most for an expected move, then for the moved file's drawing


class BadQuery(ValueError):
    pass


def page_state(args) -> dict:
    """What the page sent: the stamp it has (``after``), the wait, and what follow_moves needs."""
    try:
        wait = wait_seconds(args.get("wait"))
    except ValueError as error:
        raise BadQuery(str(error)) from None
    try:
        shown = json.loads(args.get("shown") or "null")
        page = int(args.get("page") or 1)
    except ValueError as error:
        raise BadQuery(f"bad query: {error}") from None
    if shown is not None and not (isinstance(shown, dict) and set(shown) == {"frame", "file"}):
        raise BadQuery("shown must be null or {\"frame\": id, \"file\": id}")
    selected = args.get("selected") or None
    return {"after": args.get("after"), "wait": wait, "following": args.get("following") == "1", "shown": shown,
            "selected": int(selected) if is_number(selected) else selected, "page": page}


def data_changes():
    """GET /data/changes: the page's change feed (see the module)."""
    try:
        state = page_state(request.args)
    except BadQuery as error:
        response = jsonify({"detail": str(error)})
        response.status_code = 400
        return response
    stamp = stamp_after(current_user, state["after"], state["wait"])
    answer = {"stamp": stamp}
    if stamp != state["after"]:
        now = followed(current_user)
        answer.update(follow_moves(now, state["following"], state["shown"], state["selected"], state["page"]))
        # Follow shows a frame whose spectra are on their way: the page expects a move, and holds its other updates
        answer["expecting"] = bool(state["following"] and now and now["file"] == now["frame"] ==
                                   answer.get("select", state["selected"]) and chain_running(now["frame"]))
    return jsonify(answer)


# `start` runs once per mount of the page (its input never changes) and loops until the page is left or mounted
# again; `state` keeps the page's state where the loop reads it (not waiting for the viewer, as a callback with
# the drawn file among its inputs would: a click must reach the loop at once), and `drawn` lets a waiting stamp
# go once a moved file is drawn.
FEED_JS = {
    "start": """
function(_mounted, stamp) {
    const feed = window.gspDataChanges = window.gspDataChanges || {generation: 0};
    const generation = ++feed.generation;
    clearTimeout(feed.timer);
    Object.assign(feed, {pending: undefined, moving: 0, expecting: 0, released: false, applied: 0, timer: null});
    const current = () => feed.generation === generation && document.getElementById('%(anchor)s') !== null;
    const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
    // once a moved file is drawn its stamp goes (the index shows a new frame with it: `released`); later ones
    // wait again while a move is expected
    feed.applyStamp = function() {
        if (feed.pending === undefined || !current()) { return; }
        const now = Date.now();
        const held = feed.moving || (feed.released ? 0 : feed.expecting);
        const due = Math.max(held ? held + %(hold_ms)d - now : 0, feed.applied + %(spacing_ms)d - now);
        clearTimeout(feed.timer);
        if (due > 0) {
            feed.timer = setTimeout(feed.applyStamp, due);
            return;
        }
        window.dash_clientside.set_props('%(stamp)s', {data: feed.pending});
        Object.assign(feed, {pending: undefined, applied: now, released: false});
    };
    (async function() {
        let after = stamp || '';
        while (current()) {
            const sent = feed.state || {};
            const query = new URLSearchParams({after: after, wait: '%(wait)d', following: sent.following ? '1' : '0',
                shown: JSON.stringify(sent.shown || null), selected: sent.selected === null ||
                sent.selected === undefined ? '' : String(sent.selected), page: String(sent.page || 1)});
            let answer;
            try {
                const response = await fetch('%(url)s?' + query, {credentials: 'same-origin', cache: 'no-store'});
                if (!response.ok) { throw new Error('HTTP ' + response.status); }
                answer = await response.json();
            } catch (error) {
                await sleep(%(retry_ms)d);
                continue;
            }
            // nothing new, or the user moved while the answer was on its way: ask again with the page as it is
            if (!current() || answer.stamp === after || feed.state !== sent) { continue; }
            after = answer.stamp;
            const set = window.dash_clientside.set_props;
            const state = Object.assign({}, sent);
            if ('followed' in answer) { state.shown = answer.followed; set('%(followed)s', {data: answer.followed}); }
            if ('page' in answer) { state.page = answer.page; set('%(page)s', {data: answer.page}); }
            if ('select' in answer) {
                state.selected = answer.select;
                feed.moving = Date.now();
                set('%(selected)s', {data: answer.select});
            }
            feed.state = state;
            feed.expecting = answer.expecting ? feed.expecting || Date.now() : 0;
            feed.pending = answer.stamp;
            feed.applyStamp();
        }
    })();
    return window.dash_clientside.no_update;
}""",
    "state": """
function(selected, shown, following, page) {
    const feed = window.gspDataChanges = window.gspDataChanges || {generation: 0};
    const state = {selected: selected, shown: shown, following: following, page: page};
    if (JSON.stringify(feed.state || {}) !== JSON.stringify(state)) { feed.state = state; }
    return window.dash_clientside.no_update;
}""",
    "drawn": """
function(drawn, selected) {
    const feed = window.gspDataChanges || {};
    if (feed.moving && drawn !== null && drawn !== undefined && String(drawn) === String(selected)) {
        Object.assign(feed, {moving: 0, released: true});
        feed.applyStamp();
    }
    return window.dash_clientside.no_update;
}""",
}


def _feed_js(name: str) -> str:
    return FEED_JS[name] % {
        "anchor": ids.DATA_CHANGE_WAIT, "stamp": ids.DATA_STAMP, "selected": ids.DATA_SELECTED,
        "followed": ids.DATA_FOLLOWED, "page": ids.DATA_OBSERVED_PAGE, "url": URL, "wait": WAIT_S,
        "retry_ms": RETRY_MS, "spacing_ms": STAMP_SPACING_MS, "hold_ms": HOLD_MS}


URL = "/data/changes"


def register(app) -> None:
    app.server.add_url_rule(URL, "data_changes", data_changes)
    app.clientside_callback(_feed_js("state"), Output(ids.DATA_CHANGE_WAIT, "role"),
                            Input(ids.DATA_SELECTED, "data"), Input(ids.DATA_FOLLOWED, "data"),
                            Input(ids.DATA_FOLLOW, "value"), Input(ids.DATA_OBSERVED_PAGE, "data"))
    app.clientside_callback(_feed_js("drawn"), Output(ids.DATA_CHANGE_WAIT, "lang"),
                            Input(ids.DATA_DRAWN, "data"), State(ids.DATA_SELECTED, "data"))
    app.clientside_callback(_feed_js("start"), Output(ids.DATA_CHANGE_WAIT, "title"),
                            Input(ids.DATA_CHANGE_WAIT, "className"), State(ids.DATA_STAMP, "data"))
