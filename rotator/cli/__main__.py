"""`python -m rotator.cli`: the `rotator` command (tests and scripts run it this way)."""

from __future__ import annotations

import sys

from rotator.cli import main

if __name__ == "__main__":
    sys.exit(main())
