#!/usr/bin/env bash
# Installs a pinned Helm 3 CLI into <repo>/.cache/bin/helm, for the chart tests (test/unit/helm.test.ts)
# and for anyone linting/rendering helm/pgcdc locally.
#
# Helm is compiled from source with `go install` through the Go module proxy (the only place
# besides the npm registry we fetch from), so this needs Go >= the version helm's go.mod asks for
# (go 1.26 for helm v3.22). The module cache (GOMODCACHE, default ~/go/pkg/mod) and the build
# cache (GOCACHE, default ~/.cache/go-build) are Go's defaults and are kept between runs: the
# first build takes a few minutes on 2 cores, a rebuild after `rm .cache/bin/helm` takes seconds.
#
# Usage: scripts/install-helm.sh          # installs when .cache/bin/helm is missing or another version
#        scripts/install-helm.sh --force  # reinstalls
# Prints the path of the helm binary on stdout; progress goes to stderr.
set -euo pipefail

HELM_VERSION="${PGCDC_HELM_VERSION:-v3.22.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="$root/.cache/bin"
helm="$bin_dir/helm"

force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" = 0 ] && [ -x "$helm" ]; then
  have="$("$helm" version --template '{{.Version}}' 2>/dev/null || true)"
  if [ "$have" = "$HELM_VERSION" ]; then
    echo "$helm"
    exit 0
  fi
  echo "install-helm: $helm is ${have:-unusable}, want $HELM_VERSION; reinstalling" >&2
fi

# Find a Go toolchain: PATH first, then the usual tarball location.
go_bin="$(command -v go || true)"
if [ -z "$go_bin" ] && [ -x /usr/local/go/bin/go ]; then go_bin=/usr/local/go/bin/go; fi
if [ -z "$go_bin" ]; then
  cat >&2 <<'EOF'
install-helm: no Go toolchain found (looked on PATH and in /usr/local/go/bin).
  Helm v3.22 needs Go >= 1.26; Debian's `golang` package is older than that. Install the official
  toolchain from https://go.dev/dl/ (tar -C /usr/local -xzf go1.26.*.linux-amd64.tar.gz), or put an
  existing helm 3 binary at .cache/bin/helm.
EOF
  exit 1
fi

echo "install-helm: building helm $HELM_VERSION with $("$go_bin" version) (first build: a few minutes)" >&2
mkdir -p "$bin_dir"
start=$(date +%s)
# GOTOOLCHAIN=local: never download another Go toolchain behind our back; fail with Go's message
# ("go.mod requires go >= ...") instead. CGO is not needed by helm and keeps the binary static.
env GOBIN="$bin_dir" GOFLAGS="-trimpath -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local \
  "$go_bin" install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
echo "install-helm: built $helm in $(($(date +%s) - start))s" >&2
"$helm" version --short >&2
echo "$helm"
