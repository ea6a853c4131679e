"""GSP Live: the application factory.

``create_app()`` returns the Dash app; its Flask ``server`` serves the pages,
the login forms and the JSON API.  ``flask --app app ...`` and
``gunicorn app:application`` find the Flask server through ``application``.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from dash import Dash
from flask import Flask

ROOT = Path(__file__).resolve().parent
THEMES = {"dark": "/assets/vendor/bootswatch/darkly.min.css", "light": "/assets/vendor/bootswatch/flatly.min.css"}


def _env_flag(name: str, default: str = "0") -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


def load_config(overrides: dict | None = None) -> dict:
    """Configuration from the environment with embedded defaults (see the README)."""
    instance = Path(os.environ.get("GSP_INSTANCE_DIR", ROOT / "instance")).resolve()
    overrides = dict(overrides or {})
    instance = Path(overrides.pop("INSTANCE_DIR", instance))
    host = os.environ.get("GSP_HOST", "127.0.0.1")
    port = int(os.environ.get("GSP_PORT", "8050"))
    config = {
        "INSTANCE_DIR": str(instance),
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL") or f"sqlite:///{instance / 'gsp.sqlite3'}",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        # Empty REDIS_URL: no Redis, jobs run in-process with the same job functions.
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6389/0"),
        "DATA_DIR": str(Path(os.environ.get("GSP_DATA_DIR", ROOT / "data")).resolve()),
        "HOST": host,
        "PORT": port,
        "PUBLIC_URL": os.environ.get("GSP_PUBLIC_URL", f"http://{host}:{port}"),
        "SMTP_HOST": os.environ.get("SMTP_HOST", ""),
        "SMTP_PORT": int(os.environ.get("SMTP_PORT", "25")),
        "SMTP_USER": os.environ.get("SMTP_USER", ""),
        "SMTP_PASSWORD": os.environ.get("SMTP_PASSWORD", ""),
        "SMTP_STARTTLS": _env_flag("SMTP_STARTTLS"),
        "MAIL_FROM": os.environ.get("SMTP_FROM", "GSP Live <gsp-live@localhost>"),
        "OUTBOX_DIR": str(instance / "outbox"),
        "LOGIN_MAX_ATTEMPTS": int(os.environ.get("GSP_LOGIN_MAX_ATTEMPTS", "5")),
        "LOGIN_WINDOW_SECONDS": int(os.environ.get("GSP_LOGIN_WINDOW_SECONDS", "900")),
        "SET_PASSWORD_MAX_AGE": int(os.environ.get("GSP_SET_PASSWORD_MAX_AGE", str(3 * 24 * 3600))),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _env_flag("GSP_SECURE_COOKIES"),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "MAX_CONTENT_LENGTH": int(os.environ.get("GSP_MAX_UPLOAD_BYTES", str(1024 ** 3))),
        # Static assets (URLs carry ?m=<mtime>) are reused for an hour instead of revalidated on
        # every page load; FITS downloads opt out (api/files.py).
        "SEND_FILE_MAX_AGE_DEFAULT": 3600,
    }
    config.update(overrides)
    config.setdefault("SECRET_KEY", os.environ.get("SECRET_KEY") or _instance_secret(instance))
    return config


def _instance_secret(instance: Path) -> str:
    """Generated once and kept in the instance folder, so sessions survive restarts."""
    path = instance / "secret_key"
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


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
    from pipeline import jobs

    db.init_app(server)
    auth.init_app(server)
    jobs.init_app(server)


def register_blueprints(server: Flask) -> None:
    import api

    api.init_app(server)


def register_cli(server: Flask) -> None:
    from db.cli import bootstrap_command, proposals_cli, users_cli
    from pipeline.cli import watch_command

    for command in (users_cli, proposals_cli, bootstrap_command, watch_command):
        server.cli.add_command(command)


class GspDash(Dash):
    """Links the signed-in user's theme ahead of the page, so it never flashes the wrong one."""

    def interpolate_index(self, **kwargs):
        from components.layout import signed_in_user

        theme = THEMES.get(getattr(signed_in_user(), "theme", "dark"), THEMES["dark"])
        kwargs["css"] = f'<link rel="stylesheet" href="{theme}">\n{kwargs["css"]}'
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
