#!/usr/bin/env bash
# Build the pinned helm from its Go module, cached by version outside the repo.
#
#   testbed/helm/build.sh [--path]
#
# --path prints the binary's path once it is there.
# A binary already in the cache is not rebuilt, so a warm run returns at once.
#
# helm.sh/helm/v3 has no replace lines, so a plain `go install ...@VERSION` builds it with exactly the
# dependency versions of its release. The ldflags are those of helm's own Makefile, so `helm version`
# names the release and `helm template` assumes the Kubernetes minor of its client-go.
#
# Environment: FAULTMESH_TESTBED_CACHE (default ~/.cache/faultmesh/testbed), GO (path of the go command).
# Exit status 3 means no usable Go toolchain (the caller may skip); anything else non-zero is a failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${FAULTMESH_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faultmesh/testbed}"
helm_root="$cache/helm/$HELM_VERSION"
binary="$helm_root/bin/helm"

log() { printf '[helm-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

finish() {
    [ "$print_path" = 0 ] || echo "$binary"
    exit 0
}

# Everything runs from main, called on the last line: bash has then read the whole file, so editing
# this script while a build runs cannot change what the running build does.
main() {
    print_path=0
    for arg in "$@"; do
        case "$arg" in
            --path) print_path=1 ;;
            -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) log "error: unknown argument '$arg' (known: --path)"; exit 1 ;;
        esac
    done
    [ -x "$binary" ] && finish

    go_cmd="${GO:-}"
    if [ -z "$go_cmd" ]; then
        go_cmd="$(command -v go || true)"
        [ -n "$go_cmd" ] || { [ -x /usr/local/go/bin/go ] && go_cmd=/usr/local/go/bin/go; } || true
    fi
    if [ -z "$go_cmd" ] || ! "$go_cmd" version >/dev/null 2>&1; then
        log "no Go toolchain found (looked at \$GO, PATH and /usr/local/go/bin/go)"
        exit 3
    fi
    go_version="$("$go_cmd" env GOVERSION)"
    oldest="$(printf '%s\n%s\n' "$HELM_GO_MIN_VERSION" "${go_version#go}" | sort -V | head -n1)"
    if [ "$oldest" != "$HELM_GO_MIN_VERSION" ]; then
        log "Go $go_version is older than go $HELM_GO_MIN_VERSION, which helm $HELM_VERSION needs"
        exit 3
    fi

    # The module and build caches are the Kubernetes build's: shared dependencies download once.
    export GOMODCACHE="$cache/go/mod"
    export GOCACHE="$cache/go/build"
    export GOTOOLCHAIN=local
    export GOFLAGS="-modcacherw -buildvcs=false"
    export CGO_ENABLED=0
    mkdir -p "$GOMODCACHE" "$GOCACHE" "$helm_root"

    # One helm build at a time per cache: concurrent test sessions wait here instead of racing.
    exec 9>"$helm_root/build.lock"
    flock 9
    [ -x "$binary" ] && finish

    started=$SECONDS
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
    done
    log "building helm $HELM_VERSION (Go $go_version)"
    gobin="$(mktemp -d "$helm_root/.gobin.XXXXXX")"
    (cd / && GOBIN="$gobin" nice -n 10 "$go_cmd" install -trimpath -ldflags "$ldflags" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
    mkdir -p "$(dirname "$binary")"
    mv -f "$gobin/helm" "$binary"
    rmdir "$gobin"
    log "built helm in $((SECONDS - started)) s"
    finish
}

main "$@"
