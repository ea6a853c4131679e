"""The viewer and its Advanced Visualization controls."""
from __future__ import annotations

from dash import Input, Output, State, no_update

from callbacks.data.common import signed_in_user
from components import ids
from components.data_view import VIEWER_CONTROLS, viewer_view, visual_defaults


def register(app) -> None:
    @app.callback(Output(ids.DATA_ADV_COLLAPSE, "is_open"), Input(ids.DATA_ADV_BUTTON, "n_clicks"),
                  State(ids.DATA_ADV_COLLAPSE, "is_open"), prevent_initial_call=True)
    def toggle_advanced(_n, is_open):
        return not is_open

    @app.callback(output={name: Output(control, "value") for name, control in VIEWER_CONTROLS.items()},
                  inputs=Input(ids.DATA_ADV_RESET, "n_clicks"), prevent_initial_call=True)
    def reset_advanced(_n):
        defaults = visual_defaults(signed_in_user())
        return {name: defaults[name] for name in VIEWER_CONTROLS}

    @app.callback(Output(ids.DATA_ADV_ZMIN, "disabled"), Output(ids.DATA_ADV_ZMAX, "disabled"),
                  Output(ids.DATA_ADV_PLOW, "disabled"), Output(ids.DATA_ADV_PHIGH, "disabled"),
                  Input(ids.DATA_ADV_SCALE, "value"))
    def scale_inputs(scale):
        return scale != "minmax", scale != "minmax", scale != "percentiles", scale != "percentiles"

    # drawn first by the page's layout (first_paint), so only a change redraws it
    @app.callback(output={"figure": Output(ids.DATA_GRAPH, "figure"), "config": Output(ids.DATA_GRAPH, "config"),
                          "graph_hidden": Output(ids.DATA_GRAPH_BOX, "hidden"),
                          "instead": Output(ids.DATA_VIEWER_INSTEAD, "children"),
                          "drawn_file": Output(ids.DATA_DRAWN, "data"), "compare": Output(ids.DATA_COMPARE, "value"),
                          "title": Output(ids.DATA_TITLE, "children")},
                  inputs={"selected": Input(ids.DATA_SELECTED, "data"),
                          "controls": {name: Input(control, "value") for name, control in VIEWER_CONTROLS.items()},
                          "compare": Input(ids.DATA_COMPARE, "value"), "drawn_before": State(ids.DATA_DRAWN, "data")},
                  prevent_initial_call=True)
    def viewer(selected, controls, compare, drawn_before):
        # A new file is drawn alone, its compare choices cleared (they were the previous file's) here: a callback of
        # their own, one of this one's inputs, held every new file's drawing back until it had run.
        new_file = selected != drawn_before
        drawn = viewer_view(signed_in_user(), selected, controls, () if new_file else compare)
        # the file's title comes with it; its card and other panels (header, compare choices, comments, actions,
        # S/N, night) are asked after this answer, and only for a new file: on a Follow move the web process and
        # the browser handle the viewer's answer first
        graph = drawn.figure is not None  # a hidden graph keeps its figure: nothing to draw where nobody sees it
        return {"figure": drawn.figure if graph else no_update, "config": drawn.config if graph else no_update,
                "graph_hidden": not graph, "instead": drawn.instead,
                "drawn_file": selected if new_file else no_update, "compare": [] if new_file and compare else no_update,
                "title": drawn.title if new_file else no_update}
