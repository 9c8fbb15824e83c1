"""``python -m tierstore.cli``: the command line."""

import sys

from . import main

if __name__ == "__main__":  # imported (every module is, by the wheel check): nothing runs
    sys.exit(main())
