"""Callbacks of the proposal detail view: save settings, add/remove collaborators.

Every callback re-checks the permission layer on the server: the page hides the
buttons from people who may not use them, but a crafted request must fail too.
"""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, ctx, html, no_update
from flask_login import current_user

from auth import queries
from auth.accounts import (
    PROPOSAL_DETAILS,
    AccountError,
    SettingsInvalid,
    add_collaborator_by_email,
    remove_collaborator_by_email,
    update_proposal_details,
    update_settings,
)
from auth.audit import proposal_history
from auth.permissions import can_edit_proposal_details, can_manage_proposal, get_visible_proposal
from components import ids
from components.forms import (
    LABELS,
    coerce_setting,
    collaborator_table,
    history_table,
    pi_name,
    proposal_overview,
)
from db import db
from db.queries import is_number

NOT_FOUND = "This proposal does not exist, or you do not have access to it."


def _alert(message, color: str, alert_id: str):
    icon = {"success": "check-circle", "danger": "exclamation-triangle", "warning": "exclamation-triangle",
            "info": "info-circle"}[color]
    return dbc.Alert([html.I(className=f"bi bi-{icon} me-2"), message], color=color, id=alert_id,
                     className="py-2 mb-3", dismissable=True)


def _proposal_for(proposal_id):
    """(proposal, refusal message): through auth.permissions, never trusting the page."""
    proposal = get_visible_proposal(current_user, proposal_id) if isinstance(proposal_id, int) else None
    if proposal is None:
        return None, NOT_FOUND
    if not can_manage_proposal(current_user, proposal):
        return None, f"Only the PI of {proposal.soar_id} and staff can change it."
    return proposal, None


def save_settings(n_clicks, proposal_id):
    states = ctx.states_list[1] if len(ctx.states_list) > 1 else []
    feedback_ids = [item["id"]["field"] for item in ctx.outputs_list[1]]
    blank = [""] * len(feedback_ids)
    if not n_clicks:
        return no_update, blank, no_update
    proposal, refusal = _proposal_for(proposal_id)
    if proposal is None:
        return _alert(refusal, "danger", "settings-alert"), blank, no_update
    values = {item["id"]["field"]: coerce_setting(item["id"]["field"], item.get("value")) for item in states}
    try:
        changed = update_settings(proposal, values, current_user)
    except SettingsInvalid as error:
        db.session.rollback()
        feedback = [error.problems.get(name, "") and f"{LABELS.get(name, name)} {error.problems[name]}."
                    for name in feedback_ids]
        # said at the Save button too, since the fields may be far up the page (the first is scrolled to)
        said = html.Ul([html.Li(text) for text in feedback if text], className="mb-0 mt-1")
        message = html.Div(["Nothing was saved: please correct the fields marked in red.", said],
                           className="d-inline-block align-top")
        return _alert(message, "danger", "settings-alert"), feedback, no_update
    if not changed:
        message = _alert("No changes to save.", "info", "settings-alert")
    else:
        names = ", ".join(LABELS.get(c["field"], c["field"]) for c in changed)
        message = _alert(f"Saved. Changed: {names}. New files of {proposal.soar_id} use these settings.",
                         "success", "settings-alert")
    return message, blank, history_table(proposal_history(proposal.id))


def save_details(n_clicks, proposal_id, pi, semester, title):
    """Staff set the PI, semester and title; the overview, the header and the history follow."""
    unchanged = (no_update,) * 5
    if not n_clicks:
        return (no_update, *unchanged)
    proposal = get_visible_proposal(current_user, proposal_id) if isinstance(proposal_id, int) else None
    if proposal is None:
        return (_alert(NOT_FOUND, "danger", "proposal-edit-alert"), *unchanged)
    if not can_edit_proposal_details(current_user):
        refusal = f"Only staff can change the PI, semester or title of {proposal.soar_id}."
        return (_alert(refusal, "danger", "proposal-edit-alert"), *unchanged)
    changes = {"semester": semester or "", "title": title or ""}
    if pi not in (None, ""):
        changes["pi"] = int(pi) if is_number(pi) else pi
    try:
        changed = update_proposal_details(proposal, changes, current_user)
    except AccountError as error:
        return (_alert(f"Nothing was saved: {error}", "danger", "proposal-edit-alert"), *unchanged)
    if not changed:
        return (_alert("No changes to save.", "info", "proposal-edit-alert"), *unchanged)
    words = [PROPOSAL_DETAILS[change["field"]] for change in changed]
    names = " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)
    return (_alert(f"Saved: changed {names}.", "success", "proposal-edit-alert"), proposal_overview(proposal),
            pi_name(proposal), proposal.title or "Untitled", proposal.title,
            history_table(proposal_history(proposal.id)))


def ask_removal(remove_clicks, proposal_id):
    """A trash button asks first: the dialog names who would lose access to what."""
    trigger = ctx.triggered_id
    if not isinstance(trigger, dict) or not (ctx.triggered and ctx.triggered[0].get("value")):
        return no_update, no_update, no_update
    proposal, user = get_visible_proposal(current_user, proposal_id), queries.user_by_id(trigger.get("user"))
    if proposal is None or user is None:
        return no_update, no_update, no_update
    question = (f"Remove {user.full_name} <{user.email}> from {proposal.soar_id}? "
                "They lose access to its data at once.")
    return True, question, user.id


def change_collaborators(add_clicks, n_submit, confirmed, email, pending, proposal_id):
    trigger = ctx.triggered_id
    if trigger is None or not (ctx.triggered and ctx.triggered[0].get("value")):
        return no_update, no_update, no_update, no_update
    proposal, refusal = _proposal_for(proposal_id)
    if proposal is None:
        return no_update, _alert(refusal, "danger", "collaborator-alert"), no_update, no_update
    try:
        if trigger == ids.COLLABORATOR_CONFIRM:
            user = queries.user_by_id(pending)
            if user is None:
                raise AccountError("That person is not a collaborator of this proposal.")
            removed = remove_collaborator_by_email(proposal, user.email, current_user)
            message, clear = _alert(f"Removed {removed.full_name} <{removed.email}>.", "success",
                                    "collaborator-alert"), no_update
        else:
            if not (email or "").strip():
                raise AccountError("Type the collaborator's e-mail address first.")
            user, created = add_collaborator_by_email(proposal, email, current_user)
            text = f"Added {user.full_name} <{user.email}>."
            if created:
                text += " A new account was created and a link to set a password was e-mailed."
            message, clear = _alert(text, "success", "collaborator-alert"), ""
    except AccountError as error:
        db.session.rollback()
        return no_update, _alert(str(error), "danger", "collaborator-alert"), no_update, no_update
    db.session.refresh(proposal)
    return (collaborator_table(proposal, editable=True), message, clear,
            history_table(proposal_history(proposal.id)))


# The first field a save refused is brought into view and focused: the Save button is at the form's end.
FOCUS_FIRST_WRONG_JS = """
function(_feedback) {
    const wrong = window.dash_clientside.callback_context.inputs_list[0].find(item => item.value);
    if (!wrong) { return window.dash_clientside.no_update; }
    const field = document.getElementById('setting-' + wrong.id.field);
    if (field) {
        // at once: Bootstrap's smooth scrolling would still be under way when the PI (or a test) looks
        field.scrollIntoView({block: 'center', behavior: 'instant'});
        const control = field.querySelector('input, select');
        if (control) { control.focus({preventScroll: true}); }
    }
    return wrong.id.field;
}
"""


def register(app):
    app.clientside_callback(FOCUS_FIRST_WRONG_JS, Output(ids.SETTINGS_FOCUS, "children"),
                            Input({"type": ids.SETTINGS_FEEDBACK, "field": ALL}, "children"),
                            prevent_initial_call=True)

    app.callback(
        Output(ids.SETTINGS_MESSAGE, "children"),
        Output({"type": ids.SETTINGS_FEEDBACK, "field": ALL}, "children"),
        Output(ids.PROPOSAL_HISTORY, "children", allow_duplicate=True),
        Input(ids.SETTINGS_SAVE, "n_clicks"),
        State(ids.PROPOSAL_ID, "data"),
        State({"type": ids.SETTINGS_FIELD, "field": ALL}, "value"),
        prevent_initial_call=True,
    )(lambda n_clicks, proposal_id, _values: save_settings(n_clicks, proposal_id))

    app.callback(
        Output(ids.COLLABORATOR_TABLE, "children"),
        Output(ids.COLLABORATOR_MESSAGE, "children"),
        Output(ids.COLLABORATOR_EMAIL, "value"),
        Output(ids.PROPOSAL_HISTORY, "children", allow_duplicate=True),
        Input(ids.COLLABORATOR_ADD, "n_clicks"),
        Input(ids.COLLABORATOR_EMAIL, "n_submit"),
        Input(ids.COLLABORATOR_CONFIRM, "submit_n_clicks"),
        State(ids.COLLABORATOR_EMAIL, "value"),
        State(ids.COLLABORATOR_PENDING, "data"),
        State(ids.PROPOSAL_ID, "data"),
        prevent_initial_call=True,
    )(change_collaborators)

    app.callback(Output(ids.COLLABORATOR_CONFIRM, "displayed"), Output(ids.COLLABORATOR_CONFIRM, "message"),
                 Output(ids.COLLABORATOR_PENDING, "data"),
                 Input({"type": ids.COLLABORATOR_REMOVE, "user": ALL}, "n_clicks"), State(ids.PROPOSAL_ID, "data"),
                 prevent_initial_call=True)(ask_removal)

    # The header and the overview show the PI and title: they follow a save, and so does the title field (a
    # placeholder's label goes when it gets its PI).
    app.callback(Output(ids.PROPOSAL_EDIT_MESSAGE, "children"), Output(ids.PROPOSAL_OVERVIEW, "children"),
                 Output("proposal-header-pi", "children"), Output("proposal-header-title", "children"),
                 Output(ids.PROPOSAL_EDIT_TITLE, "value"),
                 Output(ids.PROPOSAL_HISTORY, "children", allow_duplicate=True),
                 Input(ids.PROPOSAL_EDIT_SAVE, "n_clicks"),
                 State(ids.PROPOSAL_ID, "data"), State(ids.PROPOSAL_EDIT_PI, "value"),
                 State(ids.PROPOSAL_EDIT_SEMESTER, "value"), State(ids.PROPOSAL_EDIT_TITLE, "value"),
                 prevent_initial_call=True)(save_details)
