#!/usr/bin/env bash
# Reproduces the Dockerfile's steps without a Docker engine, to catch a broken image early:
#   1. build context: the working tree's files (git ls-files: tracked + untracked-not-ignored),
#      minus the .dockerignore patterns (roughly: a pattern matches a path or a parent folder);
#   2. build stage: the files the Dockerfile copies, `npm ci` + `npm run build`;
#   3. runtime stage: package.json/package-lock.json, `npm ci --omit=dev`, bin/, schemas/, dist/;
#   4. runs `node bin/pgcdc.js --version` and `--help` there, with NODE_ENV=production, as uid 10001
#      when setpriv is available (the app's files are then read-only to it, like in the image).
# Uses Node 24 from scripts/node-env.sh. Exits non-zero when a step fails.
#
# Usage: scripts/docker-smoke.sh [--keep]   (--keep leaves the temp dir for inspection)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
keep=0
[ "${1:-}" = "--keep" ] && keep=1
# shellcheck source=scripts/node-env.sh
source "$root/scripts/node-env.sh"

work="$(mktemp -d "${TMPDIR:-/tmp}/pgcdc-docker-smoke.XXXXXX")"
cleanup() { if [ "$keep" = 1 ]; then echo "docker-smoke: kept $work" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT
step() { printf '\n== docker-smoke: %s\n' "$*" >&2; }

step "node $(node --version), npm $(npm --version); work dir $work"

# ---- 1. build context ----
step "build context (git ls-files minus .dockerignore)"
patterns=()
if [ -f "$root/.dockerignore" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%%#*}"
    line="$(echo "$line" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e 's#^/##' -e 's#/$##')"
    [ -n "$line" ] && patterns+=("$line")
  done <"$root/.dockerignore"
fi
ignored() {
  local path="$1" pat prefix="" part
  IFS='/' read -ra parts <<<"$path"
  for part in "${parts[@]}"; do
    prefix="${prefix:+$prefix/}$part"
    for pat in "${patterns[@]}"; do
      pat="${pat#\*\*/}"
      # shellcheck disable=SC2053 # glob match on purpose
      [[ "$prefix" == $pat || "$part" == $pat ]] && return 0
    done
  done
  return 1
}
ctx="$work/context"
mkdir -p "$ctx"
count=0
while IFS= read -r -d '' f; do
  [ -e "$root/$f" ] || continue # deleted in the working tree
  ignored "$f" && continue
  mkdir -p "$ctx/$(dirname "$f")"
  cp -p "$root/$f" "$ctx/$f"
  count=$((count + 1))
done < <(git -C "$root" ls-files -z --cached --others --exclude-standard)
echo "context: $count files" >&2
for f in package.json package-lock.json tsconfig.json tsconfig.build.json src bin schemas; do
  [ -e "$ctx/$f" ] || { echo "docker-smoke: $f is missing from the build context (.dockerignore?)" >&2; exit 1; }
done

# ---- 2. build stage ----
step "build stage: npm ci && npm run build"
build="$work/build"
mkdir -p "$build"
cp "$ctx/package.json" "$ctx/package-lock.json" "$build/"
mkdir -p "$build/scripts" && cp -R "$ctx/scripts/patch-dependencies.mjs" "$ctx/scripts/patches" "$build/scripts/"
(cd "$build" && npm ci --no-audit --no-fund)
cp "$ctx/tsconfig.json" "$ctx/tsconfig.build.json" "$build/"
cp -R "$ctx/src" "$build/src"
(cd "$build" && npm run build)
[ -f "$build/dist/cli/main.js" ] || { echo "docker-smoke: npm run build produced no dist/cli/main.js" >&2; exit 1; }

# ---- 3. runtime stage ----
step "runtime stage: npm ci --omit=dev + dist/ bin/ schemas/ package.json"
app="$work/app"
mkdir -p "$app"
cp "$ctx/package.json" "$ctx/package-lock.json" "$app/"
mkdir -p "$app/scripts" && cp -R "$ctx/scripts/patch-dependencies.mjs" "$ctx/scripts/patches" "$app/scripts/"
(cd "$app" && npm ci --omit=dev --no-audit --no-fund)
grep -q 'push(message)' "$app/node_modules/kafkajs/src/producer/groupMessagesPerPartition.js" \
  || { echo "docker-smoke: the kafkajs patch was not applied in the runtime stage" >&2; exit 1; }
grep -q 'pgcdc patch' "$app/node_modules/kafkajs/src/producer/sendMessages.js" \
  || { echo "docker-smoke: the kafkajs retry patch was not applied in the runtime stage" >&2; exit 1; }
rm -rf "$app/scripts" # the image has no scripts/ either (the deps stage's copy stays behind)
rm -f "$app/package-lock.json" # the image keeps only package.json
cp -R "$ctx/bin" "$app/bin"
cp -R "$ctx/schemas" "$app/schemas"
cp -R "$build/dist" "$app/dist"
for dev in typescript eslint prettier; do
  [ ! -e "$app/node_modules/$dev" ] || { echo "docker-smoke: dev dependency $dev in the runtime stage" >&2; exit 1; }
done
echo "runtime size: $(du -sh "$app" | cut -f1) (node_modules $(du -sh "$app/node_modules" | cut -f1))" >&2

# ---- 4. run ----
as_app_user=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
  chown -R 0:0 "$app" && chmod -R go-w "$app"
  chmod 755 "$work" # let uid 10001 reach the app dir
  as_app_user=(setpriv --reuid=10001 --regid=10001 --clear-groups)
  echo "running as uid 10001 (app files read-only to it)" >&2
fi
run() {
  (cd /tmp && env -i PATH="$PATH" HOME=/tmp NODE_ENV=production NODE_OPTIONS=--enable-source-maps \
    "${as_app_user[@]}" node "$app/bin/pgcdc.js" "$@")
}
step "node bin/pgcdc.js --version"
version="$(run --version)" || { echo "docker-smoke: pgcdc --version failed" >&2; exit 1; }
echo "$version"
want="$(node -p "require('$app/package.json').version")"
[ "$version" = "$want" ] || { echo "docker-smoke: --version printed '$version', package.json says '$want'" >&2; exit 1; }
step "node bin/pgcdc.js --help"
run --help || { echo "docker-smoke: pgcdc --help failed" >&2; exit 1; }

step "OK: the image's steps succeed (build, production install, --version, --help)"
