"""``python -m csnet ...``: the ``csnet`` command, for environments whose scripts folder is not on PATH."""
import sys

from csnet.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
