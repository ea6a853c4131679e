"""Configuration from the environment with embedded defaults (see the README); shared by the web
app (``app.py``) and the worker app (``live/app.py``)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent


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
        # A running job whose heartbeat is older than this is taken as lost (its worker died).
        "JOB_STALE_SECONDS": float(os.environ.get("GSP_JOB_STALE_SECONDS", "30")),
        # A job that met an error of its environment (a folder briefly unwritable, a full disk) runs again after
        # each of these delays, then fails for good.
        "JOB_RETRY_DELAYS": tuple(float(delay) for delay in
                                  os.environ.get("GSP_JOB_RETRY_DELAYS", "5,15,45").split(",") if delay.strip()),
        # An idle worker beats every half of this; one silent for longer is not counted (GET /api/).
        "WORKER_TTL_SECONDS": int(os.environ.get("GSP_WORKER_TTL_SECONDS", "30")),
        # A block of bias/flat frames has ended when none came for this long (its master is rebuilt once).
        "CALIBRATION_BLOCK_SECONDS": float(os.environ.get("GSP_CALIBRATION_BLOCK_SECONDS", "120")),
        # Webhooks may reach loopback and private addresses only when this is set (tests, closed networks).
        "WEBHOOK_ALLOW_PRIVATE": _env_flag("GSP_WEBHOOK_ALLOW_PRIVATE"),
        "WEBHOOK_TIMEOUT_SECONDS": float(os.environ.get("GSP_WEBHOOK_TIMEOUT_SECONDS", "5")),
        # A webhook not acknowledged is tried again after each of these delays (the last one repeated) until a day
        # has passed since its event; a subscription whose deliveries failed for a day is paused.
        "WEBHOOK_RETRY_DELAYS": tuple(float(delay) for delay in os.environ.get(
            "GSP_WEBHOOK_RETRY_DELAYS", "10,30,60,300,900,1800,3600").split(",") if delay.strip()),
        "WEBHOOK_GIVE_UP_SECONDS": float(os.environ.get("GSP_WEBHOOK_GIVE_UP_SECONDS", str(24 * 3600))),
        "DIGEST_SECONDS": float(os.environ.get("GSP_DIGEST_SECONDS", "600")),  # one e-mail digest per subscription
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
