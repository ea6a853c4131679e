"""User panel: regenerate the API token (shown once), store the visual options, and make, change and delete
one's subscriptions (a new one's secret shown once)."""
from dash import ALL, MATCH, Input, Output, State, ctx, html
from dash.exceptions import PreventUpdate
from flask import current_app
from flask_login import current_user

from auth.accounts import AccountError, regenerate_token, update_profile
from auth.subscriptions import (SubscriptionError, delete_subscription, get_own_subscription, subscribe,
                                update_subscription)
from components import ids
from components.subscriptions import subscription_table
from figures.style import COLORMAPS
from db import db

THEMES = ("dark", "light")
FORMATS = ("static", "interactive")


class PreferenceError(ValueError):
    pass


def save_visual_options(user, *, theme, colormap, plot_format, show_saturated) -> list[str]:
    """Validate and store the user's visual options; returns the names of those that changed."""
    if theme not in THEMES:
        raise PreferenceError(f"Theme must be one of {', '.join(THEMES)}.")
    if colormap not in COLORMAPS:
        raise PreferenceError(f"Color map must be one of {', '.join(COLORMAPS)}.")
    if plot_format not in FORMATS:
        raise PreferenceError(f"Format must be one of {', '.join(FORMATS)}.")
    wanted = {"theme": theme, "colormap": colormap, "plot_format": plot_format, "show_saturated": bool(show_saturated)}
    changed = [name for name, value in wanted.items() if getattr(user, name) != value]
    for name in changed:
        setattr(user, name, wanted[name])
    if changed:
        db.session.commit()
    return changed


def register(app):
    register_subscriptions(app)
    # "Generate new token" only asks (in the browser); the confirmation makes the token, Cancel closes.
    app.clientside_callback(
        "function(ask, cancel) { return window.dash_clientside.callback_context.triggered_id === '"
        + ids.ACCOUNT_TOKEN_BUTTON + "'; }",
        Output(ids.ACCOUNT_TOKEN_MODAL, "is_open"), Input(ids.ACCOUNT_TOKEN_BUTTON, "n_clicks"),
        Input(ids.ACCOUNT_TOKEN_CANCEL, "n_clicks"), prevent_initial_call=True)

    @app.callback(Output(ids.ACCOUNT_TOKEN, "children"), Output(ids.ACCOUNT_TOKEN_MODAL, "is_open",
                                                                allow_duplicate=True),
                  Input(ids.ACCOUNT_TOKEN_CONFIRM, "n_clicks"), prevent_initial_call=True)
    def new_token(n_clicks):
        if not n_clicks or not current_user or not current_user.is_authenticated:
            raise PreventUpdate
        key = regenerate_token(current_user)
        db.session.commit()
        return key, False

    @app.callback(Output(ids.ACCOUNT_MESSAGE, "children"), Input(ids.ACCOUNT_SAVE, "n_clicks"),
                  State(ids.ACCOUNT_FIRST_NAME, "value"), State(ids.ACCOUNT_LAST_NAME, "value"),
                  State(ids.ACCOUNT_EMAIL, "value"), State(ids.ACCOUNT_PARTNER, "value"), prevent_initial_call=True)
    def save_details(n_clicks, first_name, last_name, email, partner):
        if not n_clicks or not current_user or not current_user.is_authenticated:
            raise PreventUpdate
        try:
            changed = update_profile(current_user, first_name=first_name, last_name=last_name, email=email,
                                     partner=partner)
        except AccountError as error:
            return html.Span([html.I(className="bi bi-exclamation-triangle me-1"), f"Not saved: {error}"],
                             className="text-danger", id="account-details-error")
        if not changed:
            return html.Span("No changes to save.", className="text-muted")
        return html.Span([html.I(className="bi bi-check-circle me-1"), "Saved."], className="text-success",
                         id="account-details-saved")

    @app.callback(Output(ids.ACCOUNT_VISUAL_MESSAGE, "children"), Input(ids.ACCOUNT_THEME, "value"),
                  Input(ids.ACCOUNT_COLORMAP, "value"), Input(ids.ACCOUNT_FORMAT, "value"),
                  Input(ids.ACCOUNT_SATURATED, "value"), prevent_initial_call=True)
    def visual_options(theme, colormap, plot_format, saturated):
        if not current_user or not current_user.is_authenticated:
            raise PreventUpdate
        try:
            changed = save_visual_options(current_user, theme=theme, colormap=colormap, plot_format=plot_format,
                                          show_saturated=bool(saturated))
        except PreferenceError as error:
            return html.Span(str(error), className="text-danger")
        if not changed:
            raise PreventUpdate
        message = [html.I(className="bi bi-check-circle me-1"), "Saved."]
        if "theme" in changed:
            message += [" The theme applies on the next page load: ",
                        html.A("reload now", href="/account", className="alert-link")]
        return html.Span(message, className="text-success", id="account-visual-saved")


def _signed_in() -> None:
    if not current_user or not current_user.is_authenticated:
        raise PreventUpdate


def _refused(error: Exception) -> html.Span:
    return html.Span([html.I(className="bi bi-exclamation-triangle me-1"), str(error)], className="text-danger")


def _new_subscription(proposal, url, events, format_, email) -> html.Span:
    """Subscribe the user; the secret is shown here once."""
    try:
        subscription = subscribe(current_user, proposal=proposal, events=events or [], url=url, format=format_,
                                 email=bool(email), allow_private=current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    except SubscriptionError as error:
        db.session.rollback()
        return _refused(error)
    db.session.commit()
    return html.Span(["Subscribed. Its signing secret, shown this once: ",
                      html.Code(subscription.secret, id="account-subscription-secret", className="gsp-token")],
                     className="text-success")


def register_subscriptions(app):
    @app.callback(Output(ids.ACCOUNT_SUBSCRIPTIONS, "children"), Output(ids.SUBSCRIBE_MESSAGE, "children"),
                  Input(ids.SUBSCRIBE_BUTTON, "n_clicks"), Input({"type": ids.SUBSCRIPTION_DELETE, "index": ALL},
                                                                 "n_clicks"),
                  State(ids.SUBSCRIBE_PROPOSAL, "value"), State(ids.SUBSCRIBE_URL, "value"),
                  State(ids.SUBSCRIBE_EVENTS, "value"), State(ids.SUBSCRIBE_FORMAT, "value"),
                  State(ids.SUBSCRIBE_EMAIL, "value"), prevent_initial_call=True)
    def subscriptions_changed(_subscribe, _deletes, proposal, url, events, format_, email):
        _signed_in()
        if ctx.triggered_id == ids.SUBSCRIBE_BUTTON:
            message = _new_subscription(proposal, url, events, format_, email)
        else:
            subscription = get_own_subscription(current_user, ctx.triggered_id["index"])
            if subscription is None or not ctx.triggered[0]["value"]:  # a button drawn anew, not clicked
                raise PreventUpdate
            delete_subscription(current_user, subscription)
            db.session.commit()
            message = html.Span("Subscription deleted.", className="text-success")
        return subscription_table(current_user), message

    @app.callback(Output({"type": ids.SUBSCRIPTION_STATUS, "index": MATCH}, "children"),
                  Input({"type": ids.SUBSCRIPTION_EVENTS, "index": MATCH}, "value"),
                  Input({"type": ids.SUBSCRIPTION_EMAIL, "index": MATCH}, "value"),
                  Input({"type": ids.SUBSCRIPTION_ACTIVE, "index": MATCH}, "value"), prevent_initial_call=True)
    def subscription_edited(events, email, active):
        _signed_in()
        subscription = get_own_subscription(current_user, ctx.triggered_id["index"])
        if subscription is None:
            raise PreventUpdate
        try:
            changed = update_subscription(current_user, subscription, events=events, email=bool(email),
                                          paused=not active)
        except SubscriptionError as error:
            db.session.rollback()
            return _refused(error)
        db.session.commit()
        return html.Span("Saved." if changed else "", className="text-success")
