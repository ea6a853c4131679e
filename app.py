"""GSP Live: the application factory.

``create_app()`` returns the Dash app; its Flask ``server`` serves the pages,
the login forms and the JSON API.  ``flask --app app ...`` and
``gunicorn app:application`` find the Flask server through ``application``.
"""
from __future__ import annotations

import re
from pathlib import Path

from dash import Dash
from flask import Flask

from config import load_config

ROOT = Path(__file__).resolve().parent
THEMES = {"dark": "/assets/vendor/bootswatch/darkly.min.css", "light": "/assets/vendor/bootswatch/flatly.min.css"}


def create_app(config: dict | None = None) -> Dash:
    settings = load_config(config)
    server = Flask(__name__, instance_path=settings["INSTANCE_DIR"])
    server.config.update(settings)
    register_extensions(server)
    register_blueprints(server)
    register_cli(server)
    return register_dash(server)


def register_extensions(server: Flask) -> None:
    import auth
    import db
    from live import notify, queue, tasks  # noqa: F401  (importing the tasks registers them with the queue)

    db.init_app(server)
    auth.init_app(server)
    queue.init_app(server)
    notify.init_app(server)


def register_blueprints(server: Flask) -> None:
    import api

    api.init_app(server)


def register_cli(server: Flask) -> None:
    from auth.cli import bootstrap_command, proposals_cli, users_cli
    from live.cli import watch_command

    for command in (users_cli, proposals_cli, bootstrap_command, watch_command):
        server.cli.add_command(command)


# What the browser paints while Dash's scripts load (about 2 s on a slow machine), instead of a blank
# "Loading...": the navbar's bar and brand, and a spinner where the page will be. Dash replaces it.
SKELETON = """<div id="react-entry-point"><div class="gsp-skeleton" aria-busy="true">
  <div class="gsp-skeleton-nav"><span class="gsp-skeleton-brand">Goodman Pipeline <span class="text-info">Live</span>
  </span></div>
  <div class="gsp-skeleton-body"><div class="spinner-border text-info" role="status"></div>
  <span class="ms-3">Loading GSP Live&hellip;</span></div>
</div></div>"""


# Component libraries only one page uses: their script is prefetched, not run, on every page, and that
# page loads it before drawing itself (Search: AG Grid's 1.3 MB was a third of every page's scripts).
DEFERRED_LIBRARIES = ("dash_ag_grid",)


def defer_scripts(scripts: str) -> str:
    """``scripts`` (the index's script tags) with each deferred library's tag turned into a prefetch
    link the page that needs it finds by ``data-gsp-library``."""
    for library in DEFERRED_LIBRARIES:
        scripts = re.sub(rf'<script src="([^"]*/_dash-component-suites/{library}/[^"]*)"></script>',
                         rf'<link rel="prefetch" as="script" data-gsp-library="{library}" href="\1">', scripts)
    return scripts


class GspDash(Dash):
    """Links the signed-in user's theme ahead of the page, so it never flashes the wrong one, paints
    a skeleton of the page at once, and leaves the scripts of one page's libraries to that page."""

    def interpolate_index(self, **kwargs):
        from components.layout import signed_in_user

        theme = THEMES.get(getattr(signed_in_user(), "theme", "dark"), THEMES["dark"])
        kwargs["css"] = f'<link rel="stylesheet" href="{theme}">\n{kwargs["css"]}'
        kwargs["app_entry"] = SKELETON
        kwargs["scripts"] = defer_scripts(kwargs["scripts"])
        return super().interpolate_index(**kwargs)


def register_dash(server: Flask) -> Dash:
    import callbacks
    from components.layout import shell

    app = GspDash(
        __name__,
        server=server,
        use_pages=True,
        pages_folder=str(ROOT / "pages"),
        assets_folder=str(ROOT / "assets"),
        assets_ignore=r"^(darkly|flatly)\.min\.css$",  # the theme is linked per user (GspDash)
        suppress_callback_exceptions=True,
        serve_locally=True,
        title="GSP Live",
        update_title=None,
    )
    app.layout = shell
    callbacks.register_all(app)
    return app


def __getattr__(name: str):
    # Lazy, so importing this module builds nothing; used by `flask --app app` and gunicorn.
    if name == "application":
        return create_app().server
    raise AttributeError(name)


if __name__ == "__main__":
    dash_app = create_app()
    dash_app.run(host=dash_app.server.config["HOST"], port=dash_app.server.config["PORT"], debug=False)
