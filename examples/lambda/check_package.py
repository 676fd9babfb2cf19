"""Check a Lambda package directory: only what the handler needs, and the handler imports.

    python check_package.py build/package                   # contents and size only
    python check_package.py build/package --python python3.12   # and import the handler

1. Contents: none of the modules the function never uses (the MotherDuck simulator,
   rich and what it pulls in, prometheus-client, the vault/duckdb/postgres clients) may
   be in the package.
2. Import (with `--python`, an interpreter matching Lambda's runtime and architecture):
   in an isolated interpreter whose only path is the package (plus `--extra-path`), with
   those modules made unimportable, import `rotator.aws_lambda`, load the
   `aws-secrets-manager` backend through its entry point (so the dist-info is there), and
   hand the handler a malformed event, which it must refuse with EventError before
   touching AWS or MotherDuck.
3. Size: prints the unpacked size of the package.

Exit status 0 when all checks pass, 1 otherwise (one line saying what is wrong).
Standard library only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# Top-level modules (or rotator subpackages) that must not be in the package.
FORBIDDEN = (
    "rotator/simulator",
    "rich",
    "pygments",
    "markdown_it",
    "mdurl",
    "prometheus_client",
    "hvac",
    "duckdb",
    "psycopg",
)
BLOCKED_MODULES = tuple(p.replace("/", ".") for p in FORBIDDEN)

IMPORT_CHECK = """
import sys

BLOCKED = {blocked!r}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{{name}} is not in the Lambda package")
        return None

sys.meta_path.insert(0, Blocker())
import rotator
from rotator import aws_lambda
from rotator.aws_lambda.events import EventError
from backends import load_factory
import boto3, rotator.assembly, rotator.ops.audit, rotator.state.dynamodb, rotator.verify.checks

if not rotator.__file__.startswith({package!r}):
    raise SystemExit(f"rotator was imported from {{rotator.__file__}}, not the package")
load_factory("aws-secrets-manager")
try:
    aws_lambda.handler({{}}, None)
except EventError:
    pass
else:
    raise SystemExit("the handler accepted an empty event")
print("handler imports and refuses a malformed event")
"""


def forbidden_in(package: Path) -> list[str]:
    """The forbidden modules present in `package` (as directories or single files)."""
    found = []
    for name in FORBIDDEN:
        if (package / name).is_dir() or (package / f"{name}.py").is_file():
            found.append(name)
    return found


def size_of(package: Path) -> int:
    return sum(p.stat().st_size for p in package.rglob("*") if p.is_file())


def import_check(
    package: Path, python: str, extra_path: list[str]
) -> subprocess.CompletedProcess[str]:
    """Import the handler from `package` alone in an isolated `python`."""
    paths = [str(package.resolve()), *extra_path]
    code = f"import sys; sys.path[:0] = {paths!r}\n" + IMPORT_CHECK.format(
        blocked=BLOCKED_MODULES, package=str(package.resolve())
    )
    env = {"PATH": os.environ.get("PATH", ""), "ROTATOR_LOG_LEVEL": "error"}
    return subprocess.run(
        [python, "-I", "-S", "-c", code], env=env, capture_output=True, text=True, check=False
    )  # -S: no site-packages, so every module comes from the package (or --extra-path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--python", help="interpreter to import the handler with")
    parser.add_argument("--extra-path", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    package: Path = args.package
    if not (package / "rotator" / "aws_lambda" / "__init__.py").is_file():
        print(f"check_package: {package} holds no rotator/aws_lambda/__init__.py", file=sys.stderr)
        return 1
    found = forbidden_in(package)
    if found:
        print(f"check_package: {package} holds {', '.join(found)}", file=sys.stderr)
        return 1
    if args.python:
        done = import_check(package, args.python, args.extra_path)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"check_package: the handler does not import: {last}", file=sys.stderr)
            return 1
        print(done.stdout.strip())
    print(f"package {package}: {size_of(package) / 1e6:.1f} MB unpacked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
