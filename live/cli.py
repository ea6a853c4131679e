"""``flask --app app watch [DIR]``: the ingestion watcher as a long-running command."""
from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext

from live.folders import raw_root
from live.watcher import Watcher


@click.command("watch")
@click.argument("folder", required=False)
@click.option("--rescan", "rescan_seconds", default=30.0, show_default=True,
              help="seconds between full rescans of the folder")
@with_appcontext
def watch_command(folder, rescan_seconds):
    """Ingest every new FITS file under FOLDER (default: $GSP_DATA_DIR/raw)."""

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    watcher = Watcher(folder or raw_root(), rescan_seconds=rescan_seconds)
    click.echo(f"Watching {watcher.folder} (data root {current_app.config['DATA_DIR']})")
    try:
        watcher.run()
    except KeyboardInterrupt:
        watcher.stop_event.set()
