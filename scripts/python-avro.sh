#!/usr/bin/env bash
# Installs Apache Avro's Python implementation (PyPI `avro`) into a venv under .cache, for the tests
# that decode pgcdc's records with a standard Avro reader (test/support/avro-python.ts). Idempotent:
# prints the venv's python and does nothing else when the pinned version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
AVRO_VERSION=1.12.2
venv=.cache/python-avro
stamp="$venv/.avro-$AVRO_VERSION"
if [ ! -f "$stamp" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    # Debian splits venv/ensurepip out of python3.
    apt-get install -y -qq python3-venv >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null
      apt-get install -y -qq python3-venv >/dev/null
    }
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "avro==$AVRO_VERSION"
  touch "$stamp"
fi
echo "$PWD/$venv/bin/python"
