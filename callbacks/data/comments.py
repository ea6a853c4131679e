"""Comments on the shown file: the list, and adding one."""
from __future__ import annotations

from dash import Input, Output, State, ctx, html, no_update

from auth import queries
from callbacks.data.common import signed_in_user, utc_text
from components import ids
from components.data_view import visible_file


def comment_list(comments):
    if not comments:
        return html.Div("No comments yet.", className="small text-muted")
    return html.Ul([html.Li([html.Strong(c.user.full_name if c.user else "(deleted user)"),
                             html.Span(f" \u00b7 {utc_text(c.created)}", className="small text-muted"),
                             html.Div(c.text, className="gsp-comment-text")], className="mb-2")
                    for c in comments], className="list-unstyled mb-0")


def register(app) -> None:
    @app.callback(Output(ids.DATA_COMMENTS, "children"), Output(ids.DATA_COMMENT_TEXT, "value"),
                  Output(ids.DATA_COMMENT_MESSAGE, "children"),
                  Input(ids.DATA_DRAWN, "data"), Input(ids.DATA_COMMENT_ADD, "n_clicks"),
                  State(ids.DATA_COMMENT_TEXT, "value"))
    def comments(selected, _n, text):
        user = signed_in_user()
        file = visible_file(user, selected)
        if file is None:
            return None, no_update, None
        message, clear = None, no_update
        if ctx.triggered_id == ids.DATA_COMMENT_ADD:
            try:
                queries.add_comment(user, file, text)
                clear = ""
            except queries.QueryError as error:
                message = html.Span(str(error), className="text-warning")
        return comment_list(queries.comments_for(user, file)), clear, message
