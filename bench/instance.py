"""A `make run` instance for the live benchmarks: `scripts/run` (watcher + dispatcher, `rq worker`
processes under its restart loop, its own redis-server, the web app) in a throw-away folder, driven
the way an observer's machine and a script see it: frames land in `raw/`, results come from the API.

Used by `bench/latency.py` and `bench/burst.py`.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate, timeout: float, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def land(source: Path, folder: Path) -> float:
    """Copy under a hidden name, then rename into place (what the instrument's writer does).
    Returns the wall-clock time of the rename (UTC epoch seconds)."""
    partial = folder / f".{source.name}.part"
    shutil.copyfile(source, partial)
    moment = time.time()
    os.replace(partial, folder / source.name)
    return moment


def epoch(value) -> float | None:
    """An API or catalogue timestamp (ISO text or datetime, naive = UTC) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


class PostgresServer:
    """A throw-away PostgreSQL cluster on loopback (production settings: fsync on), run as 'postgres'."""

    def __init__(self):
        entry = pwd.getpwnam("postgres")
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        folder = Path(tempfile.mkdtemp(prefix="gsp-bench-pg-"))  # initdb refuses root: the folder is postgres's
        self.folder, self.port = folder, free_port()
        os.chown(folder, self.uid, self.gid)
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not binaries:
            raise RuntimeError("PostgreSQL is not installed (scripts/debian-packages postgresql)")
        self.bin = binaries[-1]
        subprocess.run([self.bin / "initdb", "-D", folder / "data", "-U", "gsp", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, user=self.uid, group=self.gid, cwd=folder)
        self.process = subprocess.Popen(
            [self.bin / "postgres", "-D", folder / "data", "-p", str(self.port), "-k", folder,
             "-c", "listen_addresses=127.0.0.1"], user=self.uid, group=self.gid,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: listening(self.port), 30, 0.1, "PostgreSQL")
        time.sleep(1.0)  # listening comes a moment before accepting
        subprocess.run([self.bin / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "gsp", "gsp"],
                       check=True, capture_output=True, user=self.uid, group=self.gid, cwd=folder)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://gsp@127.0.0.1:{self.port}/gsp"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.folder, ignore_errors=True)


class MakeRun:
    """`scripts/run` with its instance, data folder, Redis port and web port in ``work``."""

    def __init__(self, work: Path, *, workers: int = 2, database_url: str | None = None):
        self.work = work
        self.raw = work / "data" / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {**os.environ, "GSP_INSTANCE_DIR": str(work / "instance"), "GSP_DATA_DIR": str(work / "data"),
                    "GSP_PORT": str(self.port), "GSP_REDIS_PORT": str(free_port()), "GSP_WORKERS": str(workers),
                    "GSP_DEMO": "0", "SECRET_KEY": "bench-make-run", "MPLBACKEND": "Agg"}
        self.env.pop("REDIS_URL", None)
        self.env.pop("DATABASE_URL", None)
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.database_url = database_url or f"sqlite:///{work / 'instance' / 'gsp.sqlite3'}"
        self.log = open(work / "make-run.log", "w")
        self.process = subprocess.Popen([str(ROOT / "scripts" / "run")], cwd=ROOT, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: listening(self.port) or self.process.poll() is not None, 120, 0.1, "the web app")
        if self.process.poll() is not None:
            raise RuntimeError(f"scripts/run exited at start; see {work / 'make-run.log'}")
        self.token = subprocess.run([str(VENV_BIN / "flask"), "--app", "app", "users", "token", "admin"], cwd=ROOT,
                                    env=self.env, check=True, capture_output=True, text=True).stdout.strip().split()[-1]
        wait_for(lambda: self.status()["queue"]["workers"] >= workers, 120, 0.2, f"{workers} rq worker(s)")
        self._engine = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password(self) -> str:
        """The superuser's password, as `scripts/run` printed it on first start."""
        said = (self.work / "make-run.log").read_text()
        return said.split("Created superuser 'admin' with password: ", 1)[1].split()[0]

    def get(self, path: str, **params) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(f"{self.url}{path}{query}",
                                         headers={"Authorization": f"Token {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def status(self) -> dict:
        return self.get("/api/")

    def files(self, **params) -> list[dict]:
        return self.get("/api/files/", page_size=500, **params)["results"]

    def idle(self) -> bool:
        """No job queued or running (waiting ones wait for frames that have not come)."""
        jobs = self.status()["jobs"]
        return jobs["queued"] == 0 and jobs["running"] == 0

    def wait_idle(self, timeout: float) -> None:
        """Until no job is queued or running (polled every 0.2 s)."""
        wait_for(self.idle, timeout, 0.2, "the queue to be idle")

    def db(self, query: str) -> list:
        """Rows of a read-only query straight on the catalogue."""
        import sqlalchemy as sa

        if self._engine is None:
            self._engine = sa.create_engine(self.database_url)
        with self._engine.connect() as connection:
            return list(connection.execute(sa.text(query)))

    def jobs(self, where: str = "1 = 1") -> list:
        """Job rows: kind, file, created/started/finished, claims, result."""
        return self.db("SELECT id, kind, file_id, state, reason, created, started_at, finished_at, attempts, result "
                       f"FROM jobs WHERE {where} ORDER BY id")

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # scripts/run stops its children and Redis
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-f", str(self.work)], check=False)  # any child left behind
        self.log.close()


class ReductionLoad:
    """A night being reduced on the same machine, at the priority `scripts/run` gives its workers:
    `reduce-night` of a generated night (one process per core), again and again until stopped."""

    def __init__(self, work: Path, nice: int = 10, seed: int = 81):
        from pipeline.simulate import simulate_night

        self.work = work
        simulate_night(work / "raw", seed=seed, n_bias=10, n_flats=10, n_science=4, cosmic_ray_rate=0.3)
        self.command = (f"while true; do nice -n {nice} {VENV_BIN / 'python'} -m pipeline reduce-night "
                        f"'{work / 'raw'}' \"$(mktemp -d -p '{work}')\" >/dev/null 2>&1; done")
        self.process = subprocess.Popen(["bash", "-c", self.command], cwd=ROOT, start_new_session=True)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
