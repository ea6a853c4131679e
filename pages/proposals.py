"""Proposals: the list of the user's proposals (staff: all) and one proposal's detail view
with its collaborators, data reduction settings and change history."""
from __future__ import annotations

from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html
from flask_login import current_user

from auth.audit import proposal_history
from auth.permissions import can_edit_proposal_details, can_manage_proposal
from auth.queries import active_users, collaborator_counts, find_visible_proposal, search_proposals
from components import ids
from components.forms import (
    collaborator_table,
    history_table,
    not_found,
    page_links,
    pi_name,
    proposal_details_form,
    proposal_overview,
    settings_form,
)
from db.models import Proposal

dash.register_page(__name__, path="/proposals", name="Proposals", title="Proposals · GSP Live")
dash.register_page(f"{__name__}.detail", path="/proposals/<proposal_id>", path_template="/proposals/<proposal_id>",
                   name="Proposal", title="Proposal · GSP Live", layout=lambda **query: detail_layout(**query))

PAGE_SIZE = 20
VIEWS = ("overview", "collaborators", "settings", "history")


find_proposal = find_visible_proposal


def _page_number(value) -> int:
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


def _proposal_icons(proposal: Proposal):
    def icon(name, href, title, icon_id):
        return dcc.Link(html.I(className=f"bi bi-{name}"), href=href, title=title,
                        className="gsp-icon-link", id=icon_id)

    return html.Div([
        icon("image", "/search?" + urlencode({"proposal_id": proposal.soar_id}), "Files of this proposal",
             f"data-{proposal.id}"),
        icon("person-plus", f"/proposals/{proposal.id}?view=collaborators", "Collaborators",
             f"collaborators-{proposal.id}"),
        icon("gear", f"/proposals/{proposal.id}?view=settings", "Data Reduction Settings",
             f"settings-{proposal.id}"),
    ], className="gsp-icons")


def _list_item(proposal: Proposal, count: int):
    pi = pi_name(proposal)
    abstract = proposal.abstract or ""
    return html.Div([
        html.Div(html.I(className="bi bi-stars"), className="gsp-avatar"),
        html.Div([
            html.Div([
                dcc.Link(proposal.soar_id, href=f"/proposals/{proposal.id}", className="gsp-soar-id"),
                html.Span(pi, className="gsp-pi ms-3"),
                dbc.Badge(str(count), color="success", pill=True, className="ms-3 gsp-count",
                          title=f"{count} collaborator(s)"),
            ], className="d-flex align-items-baseline flex-wrap"),
            html.Div(proposal.title or "Untitled", className="gsp-title"),
            html.Div(abstract if len(abstract) <= 240 else abstract[:237] + "…", className="gsp-abstract"),
        ], className="flex-grow-1"),
        _proposal_icons(proposal),
    ], className="gsp-proposal-item", id=f"proposal-{proposal.id}")


def layout(page=None, q=None, **_query):
    user = current_user
    search = (q or "").strip()
    count = search_proposals(user, search, 1, 1)[1]
    pages = max(1, -(-count // PAGE_SIZE))
    page = min(_page_number(page), pages)
    proposals, count = search_proposals(user, search, page, PAGE_SIZE)
    counts = collaborator_counts(p.id for p in proposals)
    items = [_list_item(p, counts.get(p.id, 0)) for p in proposals]
    if not items:
        items = [html.Div("No proposals match." if search else
                          "You are not a member of any proposal yet. Your PI or the staff can add you.",
                          className="gsp-empty", id="proposals-empty")]
    heading = "All Proposals" if user.is_staff else "My Proposals"
    return dbc.Card([
        dbc.CardHeader(dbc.Row([
            dbc.Col(html.H2([heading, dbc.Badge(str(count), color="info", pill=True, className="ms-2")],
                            className="h5 mb-0"), className="d-flex align-items-center"),
            dbc.Col(html.Form([
                dbc.InputGroup([
                    dbc.InputGroupText(html.I(className="bi bi-search")),
                    dbc.Input(name="q", value=search, placeholder="SOAR id or title", id="proposals-search",
                              type="search"),
                    dbc.Button("Search", type="submit", color="secondary", id="proposals-search-go"),
                ], size="sm"),
            ], action="/proposals", method="get"), md=4),
        ], className="g-2")),
        dbc.CardBody([html.Div(items, id=ids.PROPOSALS_LIST),
                      html.Div(page_links("/proposals", page, pages, {"q": search}), className="mt-3")]),
    ], className="gsp-proposals")


# --- detail -----------------------------------------------------------------------------------------

def _overview(proposal: Proposal, user):
    details = proposal_details_form(proposal, active_users()) if can_edit_proposal_details(user) else None
    return html.Div([html.Div(proposal_overview(proposal), id=ids.PROPOSAL_OVERVIEW), details])


def _collaborators(proposal: Proposal, editable: bool):
    add_form = html.Div()
    if editable:
        add_form = html.Div([
            dbc.InputGroup([
                dbc.InputGroupText(html.I(className="bi bi-envelope-fill")),
                dbc.Input(id=ids.COLLABORATOR_EMAIL, type="email", placeholder="Collaborator Email",
                          autoComplete="off", debounce=False),
                dbc.Button([html.I(className="bi bi-person-plus-fill me-1"), "Add Collaborator"],
                           id=ids.COLLABORATOR_ADD, color="success", n_clicks=0),
            ]),
            dbc.FormText("Someone without an account gets one (username from the e-mail) and an e-mail "
                         "with a link to set a password.", className="gsp-help"),
        ], className="mb-3")
    else:
        add_form = html.Div([html.I(className="bi bi-lock me-1"),
                             "Only the PI and staff can add or remove collaborators."],
                            className="text-muted mb-3", id="collaborators-readonly")
    return html.Div([
        add_form,
        html.Div(id=ids.COLLABORATOR_MESSAGE),
        html.Div(collaborator_table(proposal, editable=editable), id=ids.COLLABORATOR_TABLE),
        # Removing someone takes their access away at once: ask first.
        dcc.ConfirmDialog(id=ids.COLLABORATOR_CONFIRM),
        dcc.Store(id=ids.COLLABORATOR_PENDING),
    ])


def _pane(title: str, proposal: Proposal, body):
    return html.Div([html.H3([f"{title} - ", html.Span(proposal.soar_id, className="gsp-soar-id")],
                             className="h4 gsp-pane-title mb-3"), body], className="pt-3")


def detail_layout(proposal_id=None, view=None, **_query):
    user = current_user
    proposal = find_proposal(user, proposal_id)
    if proposal is None:
        return not_found("proposal")
    editable = can_manage_proposal(user, proposal)
    view = view if view in VIEWS else "overview"
    pi = pi_name(proposal)
    header = dbc.Card(dbc.CardBody(html.Div([
        html.Div(html.I(className="bi bi-stars"), className="gsp-avatar gsp-avatar-lg"),
        html.Div([
            html.Div([html.Span(proposal.soar_id, className="gsp-soar-id gsp-soar-id-lg", id="proposal-header-soar-id"),
                      html.Span(pi, className="gsp-pi gsp-pi-lg ms-3", id="proposal-header-pi")],
                     className="d-flex align-items-baseline flex-wrap"),
            html.Div(proposal.title or "Untitled", className="gsp-title", id="proposal-header-title"),
        ], className="flex-grow-1"),
        _proposal_icons(proposal),
    ], className="d-flex align-items-center")), className="gsp-proposal-header mb-3")
    tabs = dbc.Tabs([
        dbc.Tab(_pane("Proposal", proposal, _overview(proposal, user)), label="Overview", tab_id="overview"),
        dbc.Tab(_pane("Collaborators", proposal, _collaborators(proposal, editable)), label="Collaborators",
                tab_id="collaborators"),
        dbc.Tab(_pane("Data reduction settings", proposal,
                      settings_form(proposal.settings.as_settings().to_dict(), editable=editable)),
                label="Data Reduction Settings", tab_id="settings"),
        dbc.Tab(_pane("Change history", proposal,
                      html.Div(history_table(proposal_history(proposal.id)), id=ids.PROPOSAL_HISTORY)),
                label="History", tab_id="history"),
    ], id=ids.PROPOSAL_TABS, active_tab=view, className="mb-3")
    return html.Div([
        dcc.Store(id=ids.PROPOSAL_ID, data=proposal.id),
        header,
        dbc.Card(dbc.CardBody(tabs), className="gsp-proposal-detail"),
    ])
