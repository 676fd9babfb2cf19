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

# 2. It and its dependencies for Lambda's Python 3.12 on Linux: binary wheels only, so
#    pydantic-core and friends are the manylinux builds, never this machine's. Only the
#    `aws` extra (boto3): no vault, duckdb or postgres code in the function.
"$python" -m pip install \
  --target "$package" \
  --platform "$platform" \
  --implementation cp \
  --python-version 3.12 \
  --only-binary=:all: \
  --no-compile \
  "${wheel}[aws]"

# 3. The config, where ROTATOR_CONFIG points.
install -m 0644 -- "$config" "$package/config/lambda.toml"

# 4. Zip the package root (Lambda wants rotator/ and backends/ at the top of the zip).
rm -f -- "$zipfile"
(cd -- "$package" && zip -q -r -9 -X "$zipfile" .)
echo "built $zipfile ($(du -h -- "$zipfile" | cut -f1)) for $arch with $(basename -- "$config")"
