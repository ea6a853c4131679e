"""Where the data lives: raw files under ``DATA_DIR/raw`` (only ever read), products under
``DATA_DIR/processed/<night>``."""
from pathlib import Path

from flask import current_app


def data_root() -> Path:
    return Path(current_app.config["DATA_DIR"]).resolve()


def raw_root() -> Path:
    return data_root() / "raw"


def processed_root() -> Path:
    return data_root() / "processed"
