"""The job layer: the only bridge between the science (``pipeline/``), the catalogue (``db/``)
and the queue.  ``catalogue`` ingests files, ``watcher`` notices them and runs the dispatcher,
``queue`` keeps jobs (the database row is the truth, Redis carries it), ``tasks`` run the
chain's steps (``pipeline.chain``), ``worker`` is the ``rq worker`` class, ``states`` writes a
file's processing state."""


def init_app(server) -> None:
    from live import queue

    queue.init_app(server)
