"""The Lambda package holds only what the handler needs, and the handler imports from it.

Offline: build.sh needs PyPI, so these tests check its two offline parts. The dependency
selection (the Python snippet build.sh runs over the wheel's METADATA) and
examples/lambda/check_package.py, run on a package assembled from this checkout with the
dependencies from the test interpreter's site-packages, and with the CLI-only modules
(rich, pygments, prometheus-client, the simulator) made unimportable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SH = REPO / "examples" / "lambda" / "build.sh"
CHECK = REPO / "examples" / "lambda" / "check_package.py"

METADATA = """Metadata-Version: 2.4
Name: rotator
Version: 0.1.0
Requires-Dist: httpx<1,>=0.27
Requires-Dist: structlog>=24.1
Requires-Dist: pydantic<3,>=2.6
Requires-Dist: rich>=13
Requires-Dist: prometheus-client>=0.20
Requires-Dist: boto3>=1.34; extra == "aws"
Requires-Dist: hvac>=2.1; extra == "vault"
Requires-Dist: moto[server]>=5.0; extra == "dev"

"""


def _package(tmp_path: Path) -> Path:
    """rotator/ and backends/ from this checkout, as build.sh leaves them (no simulator)."""
    package = tmp_path / "package"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("rotator", "backends"):
        shutil.copytree(REPO / name, package / name, ignore=ignore)
    shutil.rmtree(package / "rotator" / "simulator")
    return package


def _check(package: Path, *, imports: bool = True) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(CHECK), str(package)]
    if imports:
        site = sysconfig.get_paths()["purelib"]
        args += ["--python", sys.executable, "--extra-path", site]
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


class TestBuildScript:
    def test_dependencies_are_the_handlers_only(self, tmp_path: Path) -> None:
        """build.sh installs rotator's requirements plus boto3: no rich, prometheus, extras."""
        text = BUILD_SH.read_text()
        snippet = re.search(r"<<'PY'\n(.*?)\nPY\n", text, re.S)
        assert snippet is not None, "build.sh no longer selects dependencies from METADATA"
        wheel = tmp_path / "rotator-0.1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as whl:
            whl.writestr("rotator-0.1.0.dist-info/METADATA", METADATA)
        done = subprocess.run(
            [sys.executable, "-", str(wheel)],
            input=snippet.group(1),
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.split() == [
            "httpx<1,>=0.27",
            "structlog>=24.1",
            "pydantic<3,>=2.6",
            "boto3>=1.34",
        ]

    def test_script_parses_and_drops_the_simulator(self) -> None:
        """build.sh is valid bash, removes the simulator and runs the package check."""
        subprocess.run(["bash", "-n", str(BUILD_SH)], check=True)
        text = BUILD_SH.read_text()
        assert 'rm -rf -- "$package/rotator/simulator"' in text
        assert "check_package.py" in text


class TestCheckPackage:
    def test_handler_imports_without_cli_only_modules(self, tmp_path: Path) -> None:
        """The package passes: the handler imports and refuses a bad event without them."""
        done = _check(_package(tmp_path))
        assert done.returncode == 0, done.stderr
        assert "handler imports and refuses a malformed event" in done.stdout
        assert re.search(r"MB unpacked", done.stdout)

    @pytest.mark.parametrize(
        "extra", ["rich", "pygments", "rotator/simulator", "prometheus_client"]
    )
    def test_refuses_modules_the_handler_does_not_need(self, tmp_path: Path, extra: str) -> None:
        """A package holding the simulator, rich, pygments or prometheus fails the check."""
        package = _package(tmp_path)
        (package / extra).mkdir(parents=True)
        (package / extra / "__init__.py").write_text("")
        done = _check(package, imports=False)
        assert done.returncode == 1
        assert f"holds {extra}" in done.stderr

    def test_catches_a_handler_that_needs_rich(self, tmp_path: Path) -> None:
        """A handler importing rich at module level fails the import check."""
        package = _package(tmp_path)
        # The package __init__ is the module that imports structlog first (with rich hidden);
        # rotator/aws_lambda/secretsmanager.py and scheduled_pass.py only import it after.
        handler = package / "rotator" / "aws_lambda" / "__init__.py"
        text = handler.read_text()
        assert "import_structlog(want_rich=False)\n\nimport structlog\n" in text
        handler.write_text(text.replace("import structlog\n", "import structlog\nimport rich\n", 1))
        done = _check(package)
        assert done.returncode == 1
        assert "does not import" in done.stderr and "rich" in done.stderr
