#!/usr/bin/env bash
# Build build/rotator-lambda.zip for template.yaml (CodeUri): rotator with the `aws` extra
# only, installed for the Lambda platform (not this machine's), plus the config the
# function reads ($ROTATOR_CONFIG = config/lambda.toml, relative to the code root).
#
#   examples/lambda/build.sh                      # x86_64, examples/config/lambda.toml
#   ARCH=arm64 CONFIG=/path/to/my.toml examples/lambda/build.sh
#
# Needs python3 (3.11+) with pip, zip, and network access to PyPI (or a pip mirror configured
# in pip.conf). Validates the config before packaging it. Repeatable: starts clean.
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd -- "$here/../.." && pwd)"
config="${CONFIG:-$repo/examples/config/lambda.toml}"
arch="${ARCH:-x86_64}"          # must match Architectures in template.yaml
python="${PYTHON:-}"
if [[ -z "$python" ]]; then      # the repo's virtualenv (make test creates it), else python3
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi
build="$here/build"
package="$build/package"
zipfile="$build/rotator-lambda.zip"

case "$arch" in
  x86_64) platform="manylinux2014_x86_64" ;;
  arm64) platform="manylinux2014_aarch64" ;;
  *) echo "build.sh: ARCH must be x86_64 or arm64, not '$arch'" >&2; exit 2 ;;
esac

if [[ ! -f "$config" ]]; then
  echo "build.sh: config $config not found (set CONFIG=...)" >&2
  exit 2
fi

# Validate the config first, with the local rotator (the package built below is for
# Lambda's platform and may not import here): a typo fails the build, not a rotation.
if [[ "${SKIP_VALIDATE:-0}" != 1 ]]; then
  if ! "$python" -c 'import rotator.cli, boto3' 2>/dev/null; then
    echo "build.sh: $python cannot import rotator and boto3 to validate $config;" \
      "pip install -e '$repo[aws]' (or PYTHON=..., or SKIP_VALIDATE=1)" >&2
    exit 2
  fi
  if ! "$python" -m rotator.cli --config "$config" config validate; then
    echo "build.sh: $config does not validate (problems above)" >&2
    exit 2
  fi
fi

rm -rf -- "$build"
mkdir -p -- "$package/config" "$build/wheels"

# 1. rotator itself as a wheel (pure Python, built from this checkout).
"$python" -m pip wheel --no-deps --wheel-dir "$build/wheels" "$repo"
wheels=("$build/wheels"/rotator-*.whl)
wheel="${wheels[0]}"

# 2. What the handler needs, and nothing else: rotator's own requirements plus the `aws`
#    extra (boto3), read from the wheel's metadata, minus what only the command line uses
#    (rich for tables, prometheus-client for textfile metrics). No vault, duckdb or
#    postgres code in the function.
deps=()  # (no mapfile: macOS ships bash 3.2)
while IFS= read -r dep; do deps+=("$dep"); done < <("$python" - "$wheel" <<'PY'
import re, sys, zipfile
from email.parser import Parser

CLI_ONLY = {"rich", "prometheus-client", "prometheus_client"}
with zipfile.ZipFile(sys.argv[1]) as whl:
    [meta] = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(whl.read(meta).decode())
for req in message.get_all("Requires-Dist") or []:
    spec, _, marker = req.partition(";")
    name = re.match(r"[A-Za-z0-9._-]+", spec.strip()).group(0)
    if name.lower() in CLI_ONLY:
        continue
    if not marker.strip() or re.fullmatch(r"""\s*extra\s*==\s*["']aws["']\s*""", marker):
        print(spec.strip())
PY
)

# 3. Installed for Lambda's Python 3.12 on Linux: binary wheels only, so pydantic-core
#    and friends are the manylinux builds, never this machine's.
pip_target=(--target "$package" --platform "$platform" --implementation cp
  --python-version 3.12 --only-binary=:all: --no-compile)
"$python" -m pip install "${pip_target[@]}" --no-deps "$wheel"
"$python" -m pip install "${pip_target[@]}" "${deps[@]}"
# The MotherDuck simulator is a test tool, and bin/ holds the CLI's launcher.
rm -rf -- "$package/rotator/simulator" "$package/bin"

# 4. The config, where ROTATOR_CONFIG points.
install -m 0644 -- "$config" "$package/config/lambda.toml"

# 5. Check the contents (nothing the handler does not need) and, with an interpreter
#    like Lambda's (python3.12 on this architecture), that the handler imports from the
#    package alone. LAMBDA_PYTHON=... picks another; LAMBDA_PYTHON=none skips the import.
lambda_python="${LAMBDA_PYTHON:-}"
if [[ -z "$lambda_python" && "$(uname -m)" == "${arch/arm64/aarch64}" ]]; then
  lambda_python="$(command -v python3.12 || true)"
fi
check=("$python" "$here/check_package.py" "$package")
if [[ -n "$lambda_python" && "$lambda_python" != none ]]; then
  check+=(--python "$lambda_python")
else
  echo "build.sh: no python3.12 for $arch here; checking contents only (set LAMBDA_PYTHON)" >&2
fi
"${check[@]}"

# 6. Zip the package root (Lambda wants rotator/ and backends/ at the top of the zip).
rm -f -- "$zipfile"
(cd -- "$package" && zip -q -r -9 -X "$zipfile" .)
zip_bytes="$(wc -c < "$zipfile")"
echo "built $zipfile ($(( zip_bytes / 1024 )) KiB zipped, $(du -sk -- "$package" | cut -f1) KiB" \
  "unpacked; Lambda allows 50 MiB zipped, 250 MiB unpacked) for $arch with $(basename -- "$config")"
