"""Callbacks of the Search page (layout: pages/search.py)."""
from __future__ import annotations

from urllib.parse import urlencode

from dash import ALL, Input, Output, State, ctx
from dash.exceptions import PreventUpdate
from flask_login import current_user

from auth import queries
from components import ids
from components.file_index import move_page, page_text, state_text


def _user():
    if not current_user or not current_user.is_authenticated:
        raise PreventUpdate
    return current_user


def search_params(filter_values: dict, text, hide) -> dict:
    """list_files parameters from the sidebar's values (empty ones dropped)."""
    params = {name: value for name, value in (filter_values or {}).items() if value not in (None, "")}
    if text and str(text).strip():
        params["search"] = str(text).strip()
    if hide:
        params["hide_raw_calibrations"] = "1"
    return params


def row_of(file) -> dict:
    return {
        "id": str(file.id),  # AG Grid row ids are strings
        "file_name": file.file_name,
        "proposal_id": file.proposal.soar_id if file.proposal else "",
        "obstype": file.obstype,
        "wavmode": file.wavmode,
        "filter": file.filter,
        "filter_2": file.filter_2,
        "grating": file.grating,
        "slit": file.slit,
        "roi": file.roi,
        "date": file.date,
        "type": queries.data_type_name(file.data_type),
        "data_type": file.data_type,
        "state": file.state,
        "state_text": state_text(file),
    }


def table_view(user, params: dict, page, page_size: int):
    """(rows, count text, page text, page) of one page of the Search table. Raises QueryError."""
    result = queries.page_of_files(user, params, page, page_size)
    pages = queries.last_page(result.count, page_size)
    return [row_of(f) for f in result.files], f"{result.count:,}", page_text(result.page, pages), result.page


ZIP_BUTTON = "btn btn-outline-success btn-sm ms-auto"


def zip_link(params: dict, count: int) -> tuple[str | None, str, str]:
    """(href, class, title) of "Download all as zip": off when nothing matches or more than a zip holds."""
    if not 0 < count <= queries.MAX_ZIP_FILES:
        why = "No file matches" if count == 0 else f"{count:,} files match; a zip holds at most {queries.MAX_ZIP_FILES}"
        return None, f"{ZIP_BUTTON} disabled", f"{why}: narrow the filters (a night, a proposal, a type)."
    return (f"/api/files/zip/?{urlencode(params)}", ZIP_BUTTON,
            f"The {count:,} files these filters match, as one zip")


def register(app):
    from pages.search import PAGE_SIZE, search_body

    filters = {"type": ids.SEARCH_FILTER, "name": ALL}

    # AG Grid's script is prefetched, not run, by every page (app.DEFERRED_LIBRARIES): run it here.
    app.clientside_callback(
        """
        function(query) {
            if (window.dash_ag_grid) { return true; }
            const link = document.querySelector('link[data-gsp-library="dash_ag_grid"]');
            return new Promise(function(resolve, reject) {
                const script = document.createElement('script');
                script.src = link.href;
                script.onload = function() { resolve(true); };
                script.onerror = function() { reject(new Error('AG Grid did not load: ' + link.href)); };
                document.head.appendChild(script);
            });
        }
        """,
        Output(ids.SEARCH_GRID_LOADED, "data"), Input(ids.SEARCH_QUERY, "data"))

    @app.callback(Output(ids.SEARCH_BODY, "children"), Input(ids.SEARCH_GRID_LOADED, "data"),
                  State(ids.SEARCH_QUERY, "data"), prevent_initial_call=True)
    def body(_loaded, query):
        return search_body(query or {})

    @app.callback(Output(ids.SEARCH_GRID, "rowData"), Output(ids.SEARCH_COUNT, "children"),
                  Output(ids.SEARCH_PAGE_TEXT, "children"), Output(ids.SEARCH_PAGE, "data"),
                  Output(ids.SEARCH_MESSAGE, "children"), Output(ids.SEARCH_ZIP, "href"),
                  Output(ids.SEARCH_ZIP, "className"), Output(ids.SEARCH_ZIP, "title"),
                  Input(filters, "value"), Input(ids.SEARCH_TEXT, "value"),
                  Input(ids.SEARCH_HIDE_RAW_CALIBRATIONS, "value"),
                  Input({"type": ids.SEARCH_PAGER, "go": ALL}, "n_clicks"), Input(ids.SEARCH_PAGE_GO, "n_clicks"),
                  Input(ids.SEARCH_PAGE_INPUT, "n_submit"),
                  State(ids.SEARCH_PAGE, "data"), State(ids.SEARCH_PAGE_INPUT, "value"))
    def table(values, text, hide, _moves, _go, _submit, page, target):
        user = _user()
        names = [item["id"]["name"] for item in ctx.inputs_list[0]]
        params = search_params(dict(zip(names, values)), text, hide)
        trigger = ctx.triggered_id
        page = page or 1
        if isinstance(trigger, dict) and trigger.get("type") == ids.SEARCH_PAGER:
            if not ctx.triggered[0]["value"]:
                raise PreventUpdate
            count = queries.count_visible(user, params)
            page = move_page(trigger["go"], page, queries.last_page(count, PAGE_SIZE))
        elif trigger in (ids.SEARCH_PAGE_GO, ids.SEARCH_PAGE_INPUT):
            count = queries.count_visible(user, params)
            page = move_page("go", page, queries.last_page(count, PAGE_SIZE), target)
        elif trigger is not None:  # a filter changed: back to the first page
            page = 1
        try:
            rows, count, text_page, page = table_view(user, params, page, PAGE_SIZE)
        except queries.QueryError as error:
            return [], "0", page_text(1, 1), 1, str(error), *zip_link(params, 0)
        return rows, count, text_page, page, None, *zip_link(params, int(count.replace(",", "")))

    @app.callback(Output(filters, "value"), Output(ids.SEARCH_TEXT, "value"),
                  Output(ids.SEARCH_HIDE_RAW_CALIBRATIONS, "value"), Input(ids.SEARCH_RESET, "n_clicks"),
                  State(filters, "value"), prevent_initial_call=True)
    def reset(_n, values):
        return [None] * len(values), "", []

    @app.callback(Output(ids.SEARCH_NAVIGATE, "href"), Input(ids.SEARCH_GRID, "cellClicked"),
                  prevent_initial_call=True)
    def open_row(cell):
        if not cell or cell.get("rowId") in (None, ""):
            raise PreventUpdate
        return f"/?id={int(cell['rowId'])}"

    # The filter state in the address bar, so the view can be bookmarked (no reload).
    app.clientside_callback(
        """
        function(values, text, hide, page) {
            const context = window.dash_clientside.callback_context;
            const url = new URL(window.location.href);
            if (url.pathname !== '/search') { return window.dash_clientside.no_update; }
            const query = new URLSearchParams();
            context.inputs_list[0].forEach(function(item) {
                if (item.value !== null && item.value !== undefined && item.value !== '') {
                    query.set(item.id.name, item.value);
                }
            });
            if (text) { query.set('search', text); }
            if (hide && hide.length) { query.set('hide_raw_calibrations', '1'); }
            if (page && page > 1) { query.set('page', String(page)); }
            const search = query.toString();
            const wanted = '/search' + (search ? '?' + search : '');
            if (url.pathname + url.search !== wanted) { window.history.replaceState({}, '', wanted); }
            return search;
        }
        """,
        Output(ids.SEARCH_URL_SYNC, "children"),
        Input(filters, "value"), Input(ids.SEARCH_TEXT, "value"), Input(ids.SEARCH_HIDE_RAW_CALIBRATIONS, "value"),
        Input(ids.SEARCH_PAGE, "data"),
    )
