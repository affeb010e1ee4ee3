"""``python -m edge`` runs the command line."""

import sys

from edge.cli import main

if __name__ == "__main__":  # not when a spawned process (the ingest's writer) imports it
    sys.exit(main())
