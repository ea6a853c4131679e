"""Database: the SQLAlchemy handle, models and Alembic migrations.

Migrations are applied only by ``flask --app app db upgrade`` (never at import):
``create_all`` in a factory races under several gunicorn workers.
"""
from sqlalchemy import event

from db import models  # noqa: F401  (the tables must be known to Alembic)
from db.extension import db, migrate  # noqa: F401  (``from db import db`` everywhere)


def init_app(app):
    db.init_app(app)
    migrate.init_app(app, db)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        _tune_sqlite(app)


def _tune_sqlite(app):
    """WAL lets the watcher, the workers and the web server write without 'database is locked'."""
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
