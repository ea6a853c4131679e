"""``python -m pipeline reduce-night RAW_DIR OUT_DIR [--settings FILE.json]``."""
import argparse
import logging
import sys

from pipeline import night


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    reduce_night = commands.add_parser("reduce-night", help="reduce a folder of raw Goodman files")
    reduce_night.add_argument("raw_dir")
    reduce_night.add_argument("out_dir")
    reduce_night.add_argument("--settings", help="JSON file of reduction settings (defaults: the manual's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    return night.main(args.raw_dir, args.out_dir, args.settings)


if __name__ == "__main__":
    sys.exit(main())
