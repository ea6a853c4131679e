"""``rq worker -w live.worker.GspWorker gsp``: an RQ worker that builds the small worker app and
imports the science and its reference data once and runs every job in its own process (no work horse
forked per job: a new horse paid ~0.2 s a job for its first queries); and that outlives Redis restarts
(RQ's own loop quits on them).  A job that kills the process is run again by the dispatcher, as is any
job whose worker died (the supervisor or systemd starts the worker again)."""
import logging
import os
import sys
import time

# One OpenMP/BLAS thread per worker (read when numpy and astroscrappy load): the workers are the
# parallelism, as reduce-night's processes are, and a second thread per worker only spins against
# the other workers for the same cores (a reduction took 5-8 s instead of 0.7 s on a busy machine).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import redis  # noqa: E402  (after the thread limits above)
from rq import SimpleWorker  # noqa: E402
from rq.cli import main as rq  # noqa: E402
from sqlalchemy.orm import configure_mappers  # noqa: E402

from live import queue  # noqa: E402
from live.app import create_worker_app  # noqa: E402  (with the tasks: numpy, astropy, ccdproc, astroscrappy)
from pipeline import lamps  # noqa: E402

_worker_app = None


def worker_app():
    """The small app a worker runs jobs in (Flask + database, no pages), built once per process."""
    global _worker_app
    if _worker_app is None:
        _worker_app = create_worker_app()
    return _worker_app


def run_job(job_id: int):
    """What RQ runs (by dotted name) for each job id the queue carries."""
    with worker_app().app_context():
        return queue.execute(job_id)


class GspWorker(SimpleWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_connection_wait_time = 2  # RQ backs off up to 60 s while Redis is away: come back at once
        self.worker_ttl = worker_app().config["WORKER_TTL_SECONDS"]
        lamps.preload()  # the lamp library and the NIST line lists, read once
        configure_mappers()  # at start, not in the first job (~50 ms)

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is None and self.birth_date is not None and not self.connection.hexists(self.key, "birth"):
            # Redis restarted empty: RQ would go on unregistered, and GET /api/ would count no worker.
            self.log.info("Worker %s: Redis lost its registration; registering again", self.name)
            self.connection.delete(self.key)
            self.register_birth()
        super().heartbeat(timeout, pipeline)

    def work(self, burst: bool = False, **kwargs) -> bool:
        """RQ's loop, started again whenever it ended because Redis went away. Jobs lost with Redis
        are re-sent by the dispatcher from the database."""
        worked = False
        while True:
            try:
                worked = super().work(burst=burst, **kwargs) or worked
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
                self.log.warning("Worker %s: Redis went away (%s)", self.name, error)
            stopping = self._stop_requested or self._shutdown_requested_date is not None  # SIGTERM / SIGINT
            if stopping or kwargs.get("max_jobs") or kwargs.get("max_idle_time"):
                return worked
            if burst and self._queues_empty():
                return worked
            self._wait_for_redis()
            time.sleep(1)  # RQ's loop ended on a fault: a persistent one must not become a busy loop

    def _queues_empty(self) -> bool:
        try:
            return not any(queue.count for queue in self.queues)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return False

    def _wait_for_redis(self) -> None:
        delay = 0.5
        while True:
            try:
                self.connection.ping()
                break
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        self.log.info("Worker %s: Redis answers; working", self.name)


def main(argv: list[str] | None = None) -> None:
    """``python -m live.worker [rq worker options] gsp``: ``rq worker -w live.worker.GspWorker``, after
    waiting for Redis to answer (``rq worker`` itself exits at once when Redis is away at start)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    url = argv[argv.index("--url") + 1] if "--url" in argv else os.environ.get("REDIS_URL", "redis://localhost:6379")
    connection, delay = redis.Redis.from_url(url, socket_connect_timeout=2), 0.5
    while True:
        try:
            connection.ping()
            break
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            logging.warning("waiting for Redis at %s: %s", url, error)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    rq(["worker", "-w", "live.worker.GspWorker", *argv], prog_name="rq")


if __name__ == "__main__":
    main()
