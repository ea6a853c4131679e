"""``rq worker -w pipeline.worker.GspWorker gsp``: an RQ worker that builds the app and imports
the science and its reference data once, before it forks a work horse per job, so a job starts
in milliseconds."""
from rq import Worker

from pipeline import jobs


class GspWorker(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        jobs.worker_app()
        from pipeline import lamps, steps  # noqa: F401  (numpy, astropy, ccdproc, astroscrappy, scipy)

        lamps.preload()
