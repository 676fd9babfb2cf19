"""Run pytest and treat "no tests collected" (exit 5) as the failure it is for us."""

from __future__ import annotations

import sys

import pytest

NO_TESTS_COLLECTED = 5


def main() -> int:
    code = int(pytest.main(sys.argv[1:]))
    if code == NO_TESTS_COLLECTED:
        print("run_pytest: pytest collected no tests; treating that as a failure", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
