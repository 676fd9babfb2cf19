"""`python -m rotator.simulator`: run the local MotherDuck simulator."""

from __future__ import annotations

import sys

from rotator.simulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
