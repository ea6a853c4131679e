"""Data: the observer's live view (file index, related files, viewers)."""
import dash
import dash_bootstrap_components as dbc
from dash import html

dash.register_page(__name__, path="/", name="Data", title="Data · GSP Live")


def layout(**_query):
    return dbc.Row([
        dbc.Col(dbc.Card([
            dbc.CardHeader(["Observed ", dbc.Badge("0", id="observed-count", color="info", pill=True)]),
            dbc.CardBody(html.Div("No files yet.", className="gsp-empty", id="observed-index")),
        ]), md=3),
        dbc.Col(dbc.Card(dbc.CardBody(html.Div(
            "Files appear here as the instrument writes them.", className="gsp-empty", id="data-main"))), md=9),
    ])
