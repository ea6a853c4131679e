"""Shared fixtures: real Redis, real PostgreSQL, a fresh migrated database per test.

Database and API tests marked ``both_databases`` run once on SQLite and once on
PostgreSQL (a throw-away cluster started on loopback as a non-root user).
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT / "tests" / "data" / "real"  # real Goodman files, with their origin and licence
SECRET = "test-secret-key"


def pytest_configure(config):
    config.addinivalue_line("markers", "both_databases: run on SQLite and on PostgreSQL")
    config.addinivalue_line("markers", "postgresql: run on PostgreSQL only (production's database)")
    config.addinivalue_line("markers", "browser: drives Debian's chromium with Playwright")


def pytest_generate_tests(metafunc):
    if "db_backend" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker
        backends = ["postgresql"] if marked("postgresql") else ["sqlite", "postgresql"] if marked("both_databases") \
            else ["sqlite"]
        metafunc.parametrize("db_backend", backends, scope="function")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


# --- Redis -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on loopback for the whole session."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (make test installs it)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


@pytest.fixture
def redis_db(redis_url):
    """The session's Redis, flushed before and after the test."""
    from redis import Redis

    connection = Redis.from_url(redis_url)
    connection.flushdb()
    yield redis_url
    connection.flushdb()


# --- PostgreSQL --------------------------------------------------------------------------------

def _pg_bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, else in the folder ``pg_config --bindir`` names (Debian
    keeps initdb and postgres out of PATH, and its ``pg_config`` says where they are)."""
    found = shutil.which(name)
    if found:
        return found
    pg_config = shutil.which("pg_config")
    if pg_config:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if bindir and (Path(bindir) / name).exists():
            return str(Path(bindir) / name)
    pytest.fail(f"PostgreSQL's {name} is neither on PATH nor in pg_config's bindir (make test installs postgresql)")


def _pg_owner() -> tuple[str, int, int]:
    """initdb refuses root: run the throw-away cluster as 'postgres' (or nobody's uid)."""
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
            return name, entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    pytest.fail("no non-root user to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL cluster on loopback (trust auth) with a migrated template database."""
    name, uid, gid = _pg_owner()
    base = Path(tempfile.mkdtemp(prefix="gsp-pg-"))
    os.chown(base, uid, gid)
    data, port = base / "data", free_port()

    def as_owner(*command):
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       user=uid, group=gid, cwd=base)

    as_owner(_pg_bin("initdb"), "-D", str(data), "-U", "gsp", "--auth=trust", "-E", "UTF8")
    process = subprocess.Popen(
        [_pg_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(base),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"],
        user=uid, group=gid, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        server = f"postgresql+psycopg://gsp@127.0.0.1:{port}"
        _wait_pg_ready(server)
        yield server
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(base, ignore_errors=True)


def _wait_pg_ready(server: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"{server}/postgres")
    deadline = time.monotonic() + 20
    while True:
        try:
            with engine.connect():
                break
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    engine.dispose()


def _pg_admin(server: str, statement: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(statement))
    engine.dispose()


# --- the app -----------------------------------------------------------------------------------

def make_app(tmp_path: Path, database_url: str, **overrides):
    from app import create_app

    config = {
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": "",
        "SECRET_KEY": SECRET,
        "TESTING": True,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",  # checking still works; scrypt cost ~0.5 s a test
    }
    config.update(overrides)
    (tmp_path / "data" / "raw").mkdir(parents=True, exist_ok=True)
    return create_app(config)


def migrate(app) -> None:
    from flask_migrate import upgrade

    with app.server.app_context():
        upgrade()


_database_counter = iter(range(1, 10**6))


def _migrated(folder: Path, database_url: str) -> None:
    """Migrate an empty database, and let go of it (a template must have no connection left)."""
    from db import db

    app = make_app(folder, database_url, REDIS_URL="")
    migrate(app)
    with app.server.app_context():
        if database_url.startswith("sqlite"):
            with db.engine.connect() as connection:  # the copies must not miss what sits in the WAL
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """One migrated SQLite database per test process, copied for each test (migrating each one was most
    of a test's setup)."""
    folder = tmp_path_factory.mktemp("sqlite-template")
    _migrated(folder, f"sqlite:///{folder / 'gsp.sqlite3'}")
    return folder / "gsp.sqlite3"


@pytest.fixture(scope="session")
def postgres_template(postgres_url, tmp_path_factory) -> str:
    """One migrated PostgreSQL database per test process, the template of each test's database."""
    _pg_admin(postgres_url, "CREATE DATABASE gsp_template")
    _migrated(tmp_path_factory.mktemp("postgres-template"), f"{postgres_url}/gsp_template")
    return "gsp_template"


@pytest.fixture
def database_url(db_backend, tmp_path, request):
    """A fresh, migrated database for this test, on the backend the test is parametrized with."""
    if db_backend == "sqlite":
        path = tmp_path / "gsp.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server, template = request.getfixturevalue("postgres_url"), request.getfixturevalue("postgres_template")
    name = f"gsp_test_{next(_database_counter)}"
    _pg_admin(server, f"CREATE DATABASE {name} TEMPLATE {template}")
    yield f"{server}/{name}"
    _pg_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def app_config():
    """Override in a test module to change the app's configuration."""
    return {}


@pytest.fixture
def dash_app(tmp_path, database_url, app_config, redis_db):
    # Jobs go to the session's real Redis and wait there: a test that wants them run starts an
    # `rq worker` (or sets REDIS_URL to "" for the in-process runner), so nothing runs behind its back.
    app = make_app(tmp_path, database_url, **{"REDIS_URL": redis_db, **app_config})
    yield app
    with app.server.app_context():
        from db import db

        db.session.remove()
        db.engine.dispose()


class FreshContextClient(FlaskClient):
    """Each request gets its own app context (so its own ``g`` and database session), as in
    production, even though the test itself holds an app context for its own queries."""

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture
def app(dash_app):
    """The Flask server with an app context pushed."""
    dash_app.server.test_client_class = FreshContextClient
    with dash_app.server.app_context():
        yield dash_app.server


@pytest.fixture
def client(app):
    return app.test_client()


# --- people ------------------------------------------------------------------------------------

PASSWORD = "Spectral-Lines-42"


@pytest.fixture
def people(app):
    """The permission matrix's cast: staff, PI, collaborator, stranger (with a proposal of their own)."""
    from auth.accounts import add_collaborator, create_proposal, create_user, regenerate_token
    from db import db

    cast = {}
    for username, staff in (("staff", True), ("pi", False), ("collab", False), ("stranger", False)):
        cast[username] = create_user(username=username, email=f"{username}@example.org", password=PASSWORD,
                                     first_name=username.title(), last_name="Tester", is_staff=staff)
    db.session.flush()
    proposal = create_proposal(soar_id="SOAR2026B-001", semester="2026B", title="Quasars", pi=cast["pi"])
    other = create_proposal(soar_id="SOAR2026B-002", semester="2026B", title="Other", pi=cast["stranger"])
    db.session.flush()
    add_collaborator(proposal, cast["collab"])
    tokens = {name: regenerate_token(user) for name, user in cast.items()}
    db.session.commit()
    return {"users": cast, "tokens": tokens, "proposal": proposal, "other_proposal": other}


def auth_header(token: str) -> dict:
    return {"Authorization": f"Token {token}"}


def _prop_of(node, name: str):
    """The ``value`` of the first component in a Dash layout (JSON) whose ``name`` is ``name``."""
    if isinstance(node, list):
        return next((found for found in (_prop_of(child, name) for child in node) if found is not None), None)
    if not isinstance(node, dict):
        return None
    props = node.get("props", {})
    if props.get("name") == name:
        return props.get("value")
    return _prop_of(props.get("children"), name)


def log_out(client):
    """Sign Out as the navbar does: POST /logout with the csrf token of the navbar's form."""
    token = _prop_of(client.get("/_dash-layout").json, "csrf_token")
    return client.post("/logout", data={"csrf_token": token})


# --- a live server for browser tests ------------------------------------------------------------

@pytest.fixture
def live_server(dash_app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, dash_app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    from live.changes import stamp_watch

    stamp_watch(dash_app.server).close()  # pages waiting for a change are answered: no request outlives the test
    server.shutdown()


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not on PATH (make test installs Debian's chromium)")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    yield page
    context.close()


ARTIFACTS = ROOT / "tests" / "artifacts"


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
