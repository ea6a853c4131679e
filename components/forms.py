"""Form pieces: the Data Reduction Settings form (built from pipeline.settings), field
wrappers, the not-found view and link-based pagination."""
from __future__ import annotations

from urllib.parse import urlencode

import dash_bootstrap_components as dbc
from dash import dcc, html

from components import ids
from pipeline import settings as reduction

# Every field of the manual's form, in its order, with its help text.  Ranges and
# choices come from pipeline.settings (the single definition); labels are the manual's.
SECTIONS = ("General Settings", "Calibrations", "Flat Normalization", "Spectroscopic Target", "Wavelength Calibration",
            "Flux Calibration")
SETTINGS_FIELDS: tuple[dict, ...] = (
    {"name": "saturation_threshold", "section": "General Settings", "kind": "number",
     "label": "Saturation Threshold (% of pixels)",
     "help": "Percentage of saturated pixels allowed. Default is 1. This filter is applied only to flat "
             "images. Above 0 and at most 100."},
    {"name": "cosmic_ray_rejection", "section": "General Settings", "kind": "select",
     "label": "Cosmic ray rejection",
     "options": {"default": "Default", "dcr": "DCR", "lacosmic": "LACosmic", "none": "None"},
     "help": "Setting `default` will automatically choose the method that worked best in our tests. `dcr` "
             "is a method that was developed by Wojtek Pych. `lacosmic` is astroscrappy's implementation of "
             "LaCosmic. `none` skips cosmic ray removal."},
    {"name": "technique", "section": "General Settings", "kind": "select", "label": "Technique",
     "options": {"Spectroscopy": "Spectroscopy", "Imaging": "Imaging"},
     "help": "What observing technique was used."},
    {"name": "ignore_bias", "section": "Calibrations", "kind": "checkbox", "label": "Ignore bias",
     "help": "If set to True the steps where a BIAS correction is required will be skipped."},
    {"name": "ignore_flats", "section": "Calibrations", "kind": "checkbox", "label": "Ignore flats",
     "help": "If set to True the steps where a FLAT correction is required will be skipped."},
    {"name": "min_bias", "section": "Calibrations", "kind": "integer", "label": "Minimum Number of Bias",
     "help": "Minimum number of BIAS files required to trigger the build of a Master Bias (1 to 500)."},
    {"name": "min_flats", "section": "Calibrations", "kind": "integer", "label": "Minimum Number of Flats",
     "help": "Minimum number of FLAT files required to trigger the build of a Master Flat (1 to 500)."},
    {"name": "flat_normalization", "section": "Flat Normalization", "kind": "select",
     "label": "Flat Normalization", "options": {"mean": "Mean", "simple": "Simple Fit", "full": "Full"},
     "help": "`mean` will calculate an overall mean to the image and normalize by it. `simple` will "
             "calculate the median dispersion profile (collapses the spatial axis) and fit a Chebyshev "
             "polynomial of order 15 by default. `full` is only for experimental purposes and it takes too "
             "long to process."},
    {"name": "flat_normalization_order", "section": "Flat Normalization", "kind": "integer",
     "label": "Flat Normalization Order",
     "help": "Order of the Chebyshev model to fit to the dispersion axis in flat normalization (1 to 50)."},
    {"name": "extraction", "section": "Spectroscopic Target", "kind": "select", "label": "Extraction Type",
     "options": {"fractional": "Fractional Extraction", "optimal": "Optimal Extraction"},
     "help": "`fractional` sums an aperture around the trace, counting partial pixels at its edges. "
             "`optimal` weights each pixel by the traced spatial profile (Horne 1986)."},
    {"name": "target_fit_model", "section": "Spectroscopic Target", "kind": "select",
     "label": "Target Fit Model", "options": {"moffat": "Moffat", "gaussian": "Gaussian"},
     "help": "Mathematical model to fit to the spatial profile of a spectroscopic target."},
    {"name": "max_targets", "section": "Spectroscopic Target", "kind": "integer",
     "label": "Maximum Number of Targets",
     "help": "Maximum number of targets to detect in a single image (1 to 10)."},
    {"name": "flux_calibration", "section": "Flux Calibration", "kind": "checkbox",
     "label": "Calibrate flux automatically",
     "help": "If set, every wavelength-calibrated science spectrum is flux calibrated with the sensitivity "
             "function of the spectrophotometric standard of its configuration closest in time."},
    {"name": "flexure_correction", "section": "Wavelength Calibration", "kind": "checkbox",
     "label": "Correct flexure from the sky lines",
     "help": "If set, each science frame's shift against its arc (the spectrograph flexes as the telescope "
             "tracks) is measured on the night-sky emission lines beside its target and removed from the "
             "arc's wavelength solution. With too few usable sky lines the arc's solution is kept, and the "
             "product says why."},
    {"name": "telluric_correction", "section": "Flux Calibration", "kind": "checkbox",
     "label": "Correct telluric absorption",
     "help": "If set, flux-calibrated spectra are divided by the atmosphere's transmission in the O2 (B, A) and "
             "water bands, measured on the standard star and scaled to the science frame's airmass. Without a "
             "standard covering a band, that band is left as observed, and the product says so."},
)
FIELD_NAMES = tuple(field["name"] for field in SETTINGS_FIELDS)
LABELS = {field["name"]: field["label"] for field in SETTINGS_FIELDS}
APPLIES_NOTE = ("These settings are used for this proposal in all reduction steps and for every new file "
                "it receives.")


def _check_fields_match_settings() -> None:
    # The form must show every setting, with the choices pipeline.settings accepts.
    names = set(reduction.ReductionSettings().to_dict())
    assert set(FIELD_NAMES) == names, f"settings form out of date: {names ^ set(FIELD_NAMES)}"
    for field in SETTINGS_FIELDS:
        if field["kind"] == "select":
            assert tuple(field["options"]) == reduction._CHOICES[field["name"]], field["name"]


_check_fields_match_settings()


def _field_id(name: str) -> dict:
    return {"type": ids.SETTINGS_FIELD, "field": name}


def _feedback_id(name: str) -> dict:
    return {"type": ids.SETTINGS_FEEDBACK, "field": name}


def _control(field: dict, value, editable: bool):
    name, kind = field["name"], field["kind"]
    if kind == "checkbox":
        return dbc.Checkbox(id=_field_id(name), label=field["label"], value=bool(value),
                            disabled=not editable, className="gsp-setting-check")
    if kind == "select":
        return dbc.Select(id=_field_id(name), value=value, disabled=not editable,
                          options=[{"label": label, "value": key} for key, label in field["options"].items()])
    # No min/max on the input: the browser would blank an out-of-range value; the server explains instead.
    return dbc.Input(id=_field_id(name), type="number", value=value, step="any", disabled=not editable,
                     inputMode="decimal" if kind == "number" else "numeric")


def settings_field(field: dict, value, editable: bool):
    label = [] if field["kind"] == "checkbox" else [dbc.Label(field["label"])]
    return html.Div([
        *label,
        _control(field, value, editable),
        html.Div(id=_feedback_id(field["name"]), className="invalid-feedback d-block gsp-setting-error"),
        dbc.FormText(field["help"], className="gsp-help"),
    ], className="gsp-setting mb-3", id=f"setting-{field['name']}")


def settings_form(values: dict, *, editable: bool):
    """The manual's Data Reduction Settings form; read-only (no Save) when ``editable`` is False."""
    sections = []
    for section in SECTIONS:
        fields = [f for f in SETTINGS_FIELDS if f["section"] == section]
        sections.append(html.H4(f"{section}:", className="gsp-settings-section mt-3"))
        # Check boxes share a row; the other fields start a new one (the manual's layout).
        rows = [[f for f in fields if f["kind"] == "checkbox"], [f for f in fields if f["kind"] != "checkbox"]]
        for row in filter(None, rows):
            sections.append(dbc.Row([dbc.Col(settings_field(f, values.get(f["name"]), editable), md=4)
                                     for f in row]))
    footer = [dbc.Alert([html.I(className="bi bi-info-circle me-2"), APPLIES_NOTE], color="secondary",
                        className="py-2 mb-3", id="settings-note")]
    if editable:
        footer.append(html.Div([
            dbc.Button([html.I(className="bi bi-save me-1"), "Save settings"], id=ids.SETTINGS_SAVE,
                       color="success", n_clicks=0),
            html.Div(id=ids.SETTINGS_MESSAGE, className="ms-3 flex-grow-1"),
            html.Div(id=ids.SETTINGS_FOCUS, hidden=True),
        ], className="d-flex align-items-center"))
    else:
        footer.append(html.Div([html.I(className="bi bi-lock me-1"),
                                "Only the PI and staff can change these settings."],
                               className="text-muted", id="settings-readonly"))
    return html.Div([*sections, html.Hr(), *footer], id="settings-form")


def coerce_setting(name: str, value):
    """Browser values -> the types pipeline.settings validates (whole floats become ints)."""
    kind = next(f["kind"] for f in SETTINGS_FIELDS if f["name"] == name)
    if kind == "checkbox":
        return bool(value)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def labelled(label: str, control, help_text: str | None = None, *, feedback_id=None, width: int | None = None):
    """A label above a control, with optional help under it."""
    children = [dbc.Label(label), control]
    if feedback_id is not None:
        children.append(html.Div(id=feedback_id, className="invalid-feedback d-block"))
    if help_text:
        children.append(dbc.FormText(help_text, className="gsp-help"))
    block = html.Div(children, className="mb-3")
    return dbc.Col(block, md=width) if width else block


def not_found(what: str = "page"):
    """The same view for 'does not exist' and 'not yours': it never hints that something exists."""
    return dbc.Card(dbc.CardBody([
        html.H2([html.I(className="bi bi-question-circle me-2"), "Not found"], className="h4"),
        html.P(f"This {what} does not exist, or you do not have access to it.", className="mb-3"),
        dcc.Link("Back to the proposals", href="/proposals", className="btn btn-outline-info btn-sm"),
    ]), className="gsp-not-found", id="not-found")


def page_links(path: str, page: int, pages: int, query: dict | None = None, *, link_id: str = "pager"):
    """Bootstrap pagination whose items are links (the page number lives in the URL)."""
    if pages <= 1:
        return html.Div()
    query = {k: v for k, v in (query or {}).items() if v not in (None, "")}

    def href(number: int) -> str:
        return f"{path}?{urlencode({**query, 'page': number})}"

    numbers = sorted({1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)})
    items, last = [], 0
    for number in numbers:
        if number - last > 1:
            items.append(html.Li(html.Span("…", className="page-link"), className="page-item disabled"))
        items.append(html.Li(dcc.Link(str(number), href=href(number), className="page-link"),
                             className="page-item active" if number == page else "page-item"))
        last = number
    prev_item = html.Li(dcc.Link(html.I(className="bi bi-chevron-left"), href=href(max(1, page - 1)),
                                 className="page-link"), className="page-item" + (" disabled" if page <= 1 else ""))
    next_item = html.Li(dcc.Link(html.I(className="bi bi-chevron-right"), href=href(min(pages, page + 1)),
                                 className="page-link"),
                        className="page-item" + (" disabled" if page >= pages else ""))
    return html.Nav(html.Ul([prev_item, *items, next_item], className="pagination justify-content-center mb-0"),
                    id=link_id)


# --- proposal detail pieces (rendered by the page and refreshed by its callbacks) ---------------

EVENT_LABELS = {
    "proposal_created": "Proposal created",
    "proposal_changed": "Proposal changed",
    "settings_changed": "Setting changed",
    "collaborator_added": "Collaborator added",
    "collaborator_removed": "Collaborator removed",
}


HISTORY_FIELDS = {"collaborators": "Collaborator", "proposal": "Proposal", "pi": "PI", "semester": "Semester",
                  "title": "Title"}


def when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def pi_name(proposal) -> str:
    return proposal.pi.full_name if proposal.pi else "no PI"


def proposal_overview(proposal):
    """The overview's rows: SOAR id, semester, title, PI, collaborators, abstract, creation."""
    def row(label, value, value_id):
        return dbc.Row([dbc.Col(html.Strong(label), md=2), dbc.Col(value, id=value_id)], className="mb-2")

    pi = proposal.pi
    return [
        row("SOAR id", proposal.soar_id, "overview-soar-id"),
        row("Semester", proposal.semester or "—", "overview-semester"),
        row("Title", proposal.title or "Untitled", "overview-title"),
        row("Principal Investigator",
            [pi.full_name, " ", html.A(f"<{pi.email}>", href=f"mailto:{pi.email}", className="gsp-email")]
            if pi else "—", "overview-pi"),
        row("Collaborators", str(len(proposal.collaborators)), "overview-collaborators"),
        row("Abstract", html.P(proposal.abstract or "No abstract.", className="gsp-abstract-full mb-0"),
            "overview-abstract"),
        row("Created", when(proposal.created), "overview-created"),
    ]


def proposal_details_form(proposal, users):
    """Staff set the PI (one of ``users``), semester and title; a proposal made from a FITS header has no PI."""
    choices = [{"label": f"{user.full_name} ({user.username})", "value": str(user.id)} for user in users]
    if proposal.pi is not None and all(choice["value"] != str(proposal.pi_id) for choice in choices):
        choices.insert(0, {"label": f"{proposal.pi.full_name} ({proposal.pi.username}, inactive)",
                           "value": str(proposal.pi_id)})
    return dbc.Card(dbc.CardBody([
        html.H4([html.I(className="bi bi-pencil-square me-2"), "Edit proposal (staff)"], className="h6 mb-3"),
        dbc.Row([
            labelled("Principal Investigator", dbc.Select(
                id=ids.PROPOSAL_EDIT_PI, options=choices, value=str(proposal.pi_id) if proposal.pi_id else None,
                placeholder="Choose the PI"), width=4),
            labelled("Semester", dbc.Input(id=ids.PROPOSAL_EDIT_SEMESTER, value=proposal.semester,
                                           placeholder="2026B", maxLength=5), "Year, then A or B.", width=2),
            labelled("Title", dbc.Input(id=ids.PROPOSAL_EDIT_TITLE, value=proposal.title, maxLength=300),
                     width=6),
        ], className="g-3"),
        html.Div([
            dbc.Button([html.I(className="bi bi-save me-1"), "Save proposal"], id=ids.PROPOSAL_EDIT_SAVE,
                       color="success", n_clicks=0),
            html.Div(id=ids.PROPOSAL_EDIT_MESSAGE, className="ms-3 flex-grow-1"),
        ], className="d-flex align-items-center"),
    ]), className="gsp-proposal-edit mt-3")


def collaborator_table(proposal, *, editable: bool):
    """PI first (never removable), then the collaborators with a remove button for PI and staff."""
    rows = []
    if proposal.pi is not None:
        rows.append(html.Tr([
            html.Td([proposal.pi.full_name, dbc.Badge("PI", color="primary", className="ms-2")]),
            html.Td(html.A(proposal.pi.email, href=f"mailto:{proposal.pi.email}", className="gsp-email")),
            html.Td()], className="gsp-pi-row"))
    for user in proposal.collaborators:
        action = html.Td()
        if editable:
            action = html.Td(dbc.Button(html.I(className="bi bi-trash3-fill"), color="link",
                                        className="text-danger p-0", title=f"Remove {user.email}",
                                        id={"type": ids.COLLABORATOR_REMOVE, "user": user.id}, n_clicks=0),
                             className="text-end")
        rows.append(html.Tr([html.Td(user.full_name),
                             html.Td(html.A(user.email, href=f"mailto:{user.email}", className="gsp-email")),
                             action], className="gsp-collaborator-row"))
    if not proposal.collaborators:
        rows.append(html.Tr(html.Td("No collaborators yet.", colSpan=3, className="text-muted")))
    return dbc.Table([html.Thead(html.Tr([html.Th("Name"), html.Th("Email"), html.Th("")])),
                      html.Tbody(rows)], hover=True, className="gsp-table mb-0", id="collaborator-rows")


def _shown(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def history_table(rows):
    """The proposal's audit trail: when, who, what, from, to."""
    if not rows:
        return html.Div("No changes recorded yet.", className="text-muted", id="history-empty")
    body = []
    for entry, _soar_id, username in rows:
        details = entry.details or {}
        field = details.get("field", "")
        body.append(html.Tr([
            html.Td(when(entry.created), className="text-nowrap"),
            html.Td(username or "system"),
            html.Td(EVENT_LABELS.get(entry.event, entry.event)),
            html.Td(HISTORY_FIELDS.get(field) or LABELS.get(field, field)),
            html.Td(_shown(details.get("old")), className="gsp-old"),
            html.Td(_shown(details.get("new")), className="gsp-new"),
        ], className=f"gsp-history-{entry.event}"))
    return dbc.Table([html.Thead(html.Tr([html.Th(h) for h in ("When", "Who", "What", "Field", "From", "To")])),
                      html.Tbody(body)], size="sm", hover=True, className="gsp-table mb-0", id="history-rows")
