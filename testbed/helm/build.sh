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
build_name=helm
# shellcheck source=../lib/build-common.sh
source "$here/../lib/build-common.sh"

helm_root="$cache/helm/$HELM_VERSION"
binary="$helm_root/bin/helm"

# Everything runs from main, called on the last line: bash has then read the whole file, so editing
# this script while a build runs cannot change what the running build does.
main() {
    parse_path_flag "$@"
    [ ! -x "$binary" ] || finish_binary

    require_go "$HELM_GO_MIN_VERSION" "helm $HELM_VERSION"
    use_go_env 0
    take_build_lock "$helm_root/build.lock"
    [ ! -x "$binary" ] || finish_binary

    started=$SECONDS
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
    done
    log "building helm $HELM_VERSION (Go $go_version)"
    gobin="$(mktemp -d "$helm_root/.gobin.XXXXXX")"
    (cd / && GOBIN="$gobin" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
    mkdir -p "$(dirname "$binary")"
    mv -f "$gobin/helm" "$binary"
    rmdir "$gobin"
    log "built helm in $((SECONDS - started)) s"
    finish_binary
}

main "$@"
