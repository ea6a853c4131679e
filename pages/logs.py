"""Logs page."""
import dash
import dash_bootstrap_components as dbc
from dash import html

dash.register_page(__name__, path="/logs", name="Logs", title="Logs · GSP Live")


def layout(**_query):
    return dbc.Card(dbc.CardBody(html.Div("Nothing here yet.", className="gsp-empty")))
