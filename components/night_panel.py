"""The night at a glance on the Data page: raw files by state, the queue, and one row per configuration
with its calibration readiness (✓/✗) and what is missing, in words. Data: auth/nights.py."""
from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from components import ids
from components.file_index import STATES

QUEUE_POLL_MS = 10_000  # workers come and go without a file changing; Redis is asked this often
READINESS_COLUMNS = (("bias", "Bias"), ("flats", "Flats"), ("arc", "Arc"), ("standard", "Standard"))


def night_card():
    """The empty card; callbacks/night.py fills it and keeps it live."""
    return dbc.Card([
        dcc.Interval(id=ids.NIGHT_POLL, interval=QUEUE_POLL_MS),
        dcc.Store(id=ids.NIGHT_DIGEST),
        html.Div(html.Div("Loading\u2026", className="gsp-empty small"), id=ids.NIGHT_BODY),
    ], id=ids.NIGHT_CARD, className="gsp-night mb-3")


def _state_badges(counts: dict) -> list:
    badges = []
    for state, number in counts.items():
        if number:
            colour, icon, words = STATES[state]
            badges.append(dbc.Badge([html.I(className=f"bi bi-{icon} me-1"), f"{number} {words}"], color=colour,
                                    className="me-1 gsp-night-state"))
    return badges


def _queue_badge(queue: dict):
    if not queue.get("ok"):
        return dbc.Badge([html.I(className="bi bi-x-octagon me-1"), "queue unreachable"], color="danger",
                         title=queue.get("error", ""), id="night-queue")
    if queue.get("backend") == "in-process":
        return dbc.Badge("jobs run in the web process", color="secondary", id="night-queue")
    workers = queue.get("workers", 0)
    words = f"{workers} worker{'' if workers == 1 else 's'}"
    return dbc.Badge([html.I(className="bi bi-cpu me-1"), words], color="success" if workers else "danger",
                     title=f"{queue.get('queued') or 0} job(s) waiting in Redis", id="night-queue")


def _jobs_text(jobs: dict) -> str:
    active = [f"{number} {state}" for state, number in jobs.items() if number and state != "done"]
    return "jobs: " + (", ".join(active) if active else "none pending")


def _readiness_cell(item: dict):
    if not item["needed"]:
        return html.Td("\u2014", className="text-muted text-center", title="not needed (settings or chain)")
    mark, colour = ("\u2713", "text-success") if item["ready"] else ("\u2717", "text-danger")
    # A master already there is what matters, not how many frames came tonight.
    count = " master" if item["master"] else f" {item['have']}/{item['need']}" if item["need"] > 1 else ""
    title = f"{item['master']} is there" if item["master"] else f"{item['have']} tonight, {item['need']} needed"
    return html.Td([html.Span(mark, className="gsp-mark"), count], className=f"{colour} text-center text-nowrap",
                   title=title)


def _configuration_row(configuration: dict):
    missing = configuration["missing"]
    # One line per missing thing: read at a glance, in the order the chain needs them.
    words = [html.Div([html.I(className="bi bi-exclamation-circle me-1"), text], className="text-warning")
             for text in missing] or html.Span([html.I(className="bi bi-check-circle me-1"), "ready"],
                                               className="text-success")
    details = " · ".join(part for part in (configuration["camera"], configuration["grating"], configuration["slit"],
                                           configuration["binning"], configuration["proposal"]) if part)
    return html.Tr([
        html.Td([html.Strong(configuration["label"]), html.Div(details, className="small text-muted")]),
        *(_readiness_cell(configuration["readiness"][key]) for key, _title in READINESS_COLUMNS),
        html.Td(words, className="gsp-night-missing"),
    ], className="gsp-night-config", **{"data-ready": str(configuration["ready"]).lower()})


def night_view(summary: dict | None, queue: dict):
    """The card's content for a night summary (None: the user has no night yet)."""
    if summary is None:
        return dbc.CardBody(html.Div("No night yet: files appear here as they arrive.", className="gsp-empty small"))
    header = html.Div([
        html.Span([html.I(className="bi bi-moon-stars me-2"), "Night ", html.Strong(summary["date"],
                                                                                   id="night-date")],
                  className="me-3 gsp-night-title"),
        html.Span(_state_badges(summary["files"]), className="me-3"),
        html.Span(_jobs_text(summary["jobs"]), className="small text-muted me-3", id="night-jobs"),
        _queue_badge(queue),
    ], className="d-flex align-items-center flex-wrap")
    rows = [_configuration_row(configuration) for configuration in summary["configurations"]]
    table = dbc.Table([
        html.Thead(html.Tr([html.Th("Configuration"), *(html.Th(title, className="text-center")
                                                         for _key, title in READINESS_COLUMNS),
                            html.Th("Missing")])),
        html.Tbody(rows),
    ], size="sm", className="gsp-table gsp-night-table mb-0 mt-2", id="night-configurations") if rows else \
        html.Div("No science, arc or flat frames tonight yet.", className="gsp-empty small mt-2")
    return dbc.CardBody([header, table], className="py-2")
