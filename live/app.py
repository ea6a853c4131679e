"""The small app a worker (and the watcher) runs in: Flask, configuration, database and the
job layer; no pages, no API, no Dash."""
from __future__ import annotations

from flask import Flask

import db
from config import load_config
from live import notify, queue, tasks  # noqa: F401  (importing the tasks registers them with the queue)
from live.cli import watch_command


def create_worker_app(config: dict | None = None) -> Flask:
    server = Flask("gsp-worker")
    server.config.update(load_config(config))
    db.init_app(server)
    queue.init_app(server)
    notify.init_app(server)
    server.cli.add_command(watch_command)
    return server
