"""``python -m symmem``: the same command line as the ``symmem`` script."""

import sys

from symmem.cli import main

if __name__ == "__main__":
    sys.exit(main())
