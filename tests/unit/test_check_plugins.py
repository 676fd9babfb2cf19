"""Check types: the built-in ones need no plugin lookup; an installed plugin is still found.

rotator/verify/checks.py reads the `rotator.checks` entry points only for a type that is
not built in (importing importlib.metadata and reading every distribution's metadata is
start-up time a config of built-in checks does not need). Fresh interpreters, with a
plugin registered through a dist-info directory on their path.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = """
from rotator.errors import CheckFailed


class AlwaysFails:
    name = "always-fails"

    def __init__(self, options, api_url):
        self.options, self.api_url = options, api_url

    @classmethod
    def from_options(cls, options, *, api_url):
        return cls(options, api_url)

    def run(self, ctx):
        raise CheckFailed("no", check=self.name, backend=ctx.backend)
"""

CHILD = """
import sys
from rotator.verify.checks import build_check

BUILT_IN = {
    "readback": {},
    "simulator": {},
    "http": {"url": "http://127.0.0.1:1/"},
    "command": {"command": ["true"]},
}
for name, options in BUILT_IN.items():
    build_check(name, options, api_url="http://127.0.0.1:1")
print("built-in", "importlib.metadata" in sys.modules)
check = build_check("always-fails", {"level": 3}, api_url="http://api")
print("plugin", type(check).__name__, check.options, check.api_url)
try:
    build_check("no-such-check", {}, api_url="http://api")
except Exception as exc:
    print("unknown", type(exc).__name__, "unknown check type 'no-such-check'" in str(exc))
"""


def test_builtin_checks_skip_the_entry_points_and_a_plugin_is_found(tmp_path: Path) -> None:
    (tmp_path / "always_fails_check.py").write_text(PLUGIN)
    dist = tmp_path / "always_fails_check-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: always-fails-check\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[rotator.checks]\nalways-fails = always_fails_check:AlwaysFails\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD)], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "built-in False",
        "plugin AlwaysFails {'level': 3} http://api",
        "unknown ConfigError True",
    ]
