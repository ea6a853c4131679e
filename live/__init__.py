"""The job layer: the only bridge between the science (``pipeline/``), the catalogue (``db/``)
and the queue.  ``catalogue`` ingests files, ``watcher`` notices them and runs the dispatcher,
``queue`` keeps jobs (the database row is the truth, Redis carries it), ``tasks`` run the
chain's steps (``pipeline.chain``), ``app`` is the workers' small app, ``worker`` the ``rq worker``
class and its entry point, ``states`` writes a file's processing state.

Modules import only those below them: states, folders < queue < tasks < catalogue < watcher < cli
< app < worker."""
