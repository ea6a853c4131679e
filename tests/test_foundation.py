"""The app factory, configuration, models on both databases, and the command line."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import PASSWORD

pytestmark = pytest.mark.both_databases


def test_factory_serves_pages_and_api(dash_app):
    from dash import Dash
    from flask import Flask

    assert isinstance(dash_app, Dash)
    assert isinstance(dash_app.server, Flask)
    rules = {rule.rule for rule in dash_app.server.url_map.iter_rules()}
    assert {"/login", "/logout", "/api/", "/set-password/<token>"} <= rules


def test_secret_key_generated_once_into_instance(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    from app import load_config

    first = load_config({"INSTANCE_DIR": str(tmp_path)})["SECRET_KEY"]
    second = load_config({"INSTANCE_DIR": str(tmp_path)})["SECRET_KEY"]
    assert first == second and len(first) == 64
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_configuration_defaults(tmp_path, monkeypatch):
    for name in ("DATABASE_URL", "REDIS_URL", "GSP_DATA_DIR", "SMTP_HOST", "GSP_HOST", "GSP_PORT"):
        monkeypatch.delenv(name, raising=False)
    from app import ROOT, load_config

    config = load_config({"INSTANCE_DIR": str(tmp_path)})
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'gsp.sqlite3'}"
    assert config["DATA_DIR"] == str(ROOT / "data")
    assert (config["HOST"], config["PORT"]) == ("127.0.0.1", 8050)
    assert config["SMTP_HOST"] == "" and config["OUTBOX_DIR"] == str(tmp_path / "outbox")
    assert config["SESSION_COOKIE_HTTPONLY"] and config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_proposal_gets_the_manuals_default_settings(app, people):
    settings = people["proposal"].settings.as_settings()
    assert settings.to_dict() == {
        "saturation_threshold": 1.0, "cosmic_ray_rejection": "default", "technique": "Spectroscopy",
        "ignore_bias": False, "ignore_flats": False, "min_bias": 10, "min_flats": 10,
        "flat_normalization": "simple", "flat_normalization_order": 15, "extraction": "fractional",
        "target_fit_model": "moffat", "max_targets": 3, "flux_calibration": True,
        "flexure_correction": True, "telluric_correction": True}


def test_duplicate_username_or_email_refused_and_nothing_written(app, people):
    from auth.accounts import AccountError, create_user
    from db import db
    from db.models import User

    before = db.session.scalar(sa.select(sa.func.count(User.id)))
    with pytest.raises(AccountError, match="username 'pi' already exists"):
        create_user(username="pi", email="new@example.org", password=PASSWORD)
    with pytest.raises(AccountError, match="e-mail 'pi@example.org' already exists"):
        create_user(username="newbie", email="PI@example.org", password=PASSWORD)
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count(User.id))) == before


def test_unique_soar_id_enforced_by_the_database(app, people):
    from db import db
    from db.models import Proposal

    db.session.add(Proposal(soar_id="SOAR2026B-001"))
    with pytest.raises(sa.exc.IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_file_lineage_and_json_columns(app, people):
    from db import db
    from db.models import File

    raw = File(file_name="0001.fits", directory_name="/d", full_path="/d/0001.fits", proposal=people["proposal"],
               obstype="OBJECT", data_type=0)
    db.session.add(raw)
    db.session.flush()
    product = File(file_name="cfzst_0001.fits", directory_name="/p", full_path="/p/cfzst_0001.fits", data_type=2,
                   parent=raw, original=raw, calibrations={"bias": {"id": 7, "why": "same binning"}})
    db.session.add(product)
    db.session.commit()
    db.session.expire_all()
    product = db.session.get(File, product.id)
    assert product.parent.file_name == "0001.fits" and product.original_file_id == raw.id
    assert product.calibrations == {"bias": {"id": 7, "why": "same binning"}}
    assert product.state == "ingested" and product.version == 1


def _cli(dash_app, *args):
    return dash_app.server.test_cli_runner().invoke(args=list(args))


def test_cli_users_proposals_and_tokens(dash_app):
    result = _cli(dash_app, "users", "create", "--username", "ana", "--email", "ana@example.org",
                  "--password", PASSWORD, "--first", "Ana", "--last", "Souza", "--partner", "Brazil")
    assert result.exit_code == 0, result.output
    assert "Created user ana" in result.output
    result = _cli(dash_app, "proposals", "create", "--soar-id", "SOAR2026B-010", "--semester", "2026B",
                  "--pi", "ana", "--title", "Novae")
    assert result.exit_code == 0, result.output
    _cli(dash_app, "users", "create", "--username", "bo", "--email", "bo@example.org", "--password", PASSWORD)
    assert _cli(dash_app, "proposals", "add-collaborator", "SOAR2026B-010", "bo").exit_code == 0
    token = _cli(dash_app, "users", "token", "bo").output.strip()
    assert len(token) == 40
    client = dash_app.server.test_client()
    assert client.get("/api/", headers={"Authorization": f"Token {token}"}).json["user"] == "bo"

    with dash_app.server.app_context():
        from db import db
        from db.models import Proposal, User

        proposal = db.session.scalar(sa.select(Proposal).where(Proposal.soar_id == "SOAR2026B-010"))
        assert proposal.pi.username == "ana" and [u.username for u in proposal.collaborators] == ["bo"]
        assert db.session.scalar(sa.select(User).where(User.username == "bo")).api_token_hash != token


@pytest.mark.parametrize("args, message", [
    (("users", "create", "--username", "x", "--email", "x@example.org"), "Missing option '--password'"),
    (("users", "create", "--username", "x", "--email", "not-an-email", "--password", PASSWORD),
     "'not-an-email' is not a valid e-mail address."),
    (("users", "create", "--username", "x", "--email", "x@example.org", "--password", "12345678"),
     "Your password can't be a commonly used password."),
    (("users", "token", "nobody"), "No user 'nobody'."),
    (("proposals", "create", "--soar-id", "S1", "--semester", "2026B", "--pi", "nobody", "--title", "T"),
     "No user 'nobody'."),
    (("proposals", "add-collaborator", "NOPE", "nobody"), "No proposal 'NOPE'."),
])
def test_cli_bad_input_gives_a_clear_message(dash_app, args, message):
    result = _cli(dash_app, *args)
    assert result.exit_code != 0
    assert message in result.output
    with dash_app.server.app_context():
        from db import db
        from db.models import User

        assert db.session.scalar(sa.select(sa.func.count(User.id))) == 0


def test_bootstrap_creates_one_superuser_and_prints_password_once(dash_app):
    first = _cli(dash_app, "bootstrap")
    assert first.exit_code == 0
    password = first.output.split("password: ")[1].split()[0]
    second = _cli(dash_app, "bootstrap")
    assert "exists already" in second.output and password not in second.output
    client = dash_app.server.test_client()
    login = client.get("/login")
    csrf = login.text.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post("/login", data={"username": "admin", "password": password, "csrf_token": csrf})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_migrations_match_the_models(app):
    """A model change without a migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from db import db

    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert diff == []
