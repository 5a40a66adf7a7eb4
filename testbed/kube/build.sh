#!/usr/bin/env bash
# Build the test-bed's Kubernetes binaries from Go modules, cached by version outside the repo.
#
#   testbed/kube/build.sh [--paths] [COMPONENT...]
#
# --paths prints NAME=PATH for each component once it is there.
# COMPONENT is any of: kube-apiserver kubectl etcd kwok kube-scheduler kube-controller-manager kubelet,
# or `all`. Without one it builds what `testbed/cluster up` runs: all of them but the kubelet.
# A binary that is already in the cache is not rebuilt, so a warm run returns at once.
#
# Why a wrapper module: k8s.io/kubernetes requires its staging modules (k8s.io/api, ...) at v0.0.0 and
# points them at ./staging with replace lines, which Go ignores in a dependency, so
# `go install k8s.io/kubernetes/cmd/kube-apiserver@vX` cannot work. The wrapper requires the release and
# replaces each staging module, read from the release's own go.mod, by its published v0.MINOR.PATCH.
#
# Environment: FAULTMESH_TESTBED_CACHE (default ~/.cache/faultmesh/testbed), GO (path of the go command).
# Exit status 3 means no usable Go toolchain (the caller may skip); anything else non-zero is a failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${FAULTMESH_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faultmesh/testbed}"
# Kubernetes commands and etcd come from one wrapper module, so they share the release's dependency
# versions; kwok is built apart with its own, exactly as its release pins them.
kube_root="$cache/kube/$KUBE_VERSION"
wrapper="$kube_root/src"
kwok_root="$cache/kwok/$KWOK_VERSION"

log() { printf '[kube-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

default_components=(kube-apiserver kubectl etcd kwok kube-scheduler kube-controller-manager)
all_components=(kube-apiserver kubectl etcd kwok kube-scheduler kube-controller-manager kubelet)

binary_of() {
    case "$1" in
        kwok) echo "$kwok_root/bin/kwok" ;;
        *) echo "$kube_root/bin/$1" ;;
    esac
}

package_of() {
    case "$1" in
        kube-apiserver|kubectl|kube-scheduler|kube-controller-manager|kubelet)
            echo "k8s.io/kubernetes/cmd/$1" ;;
        etcd) echo "go.etcd.io/etcd/server/v3" ;;
        kwok) echo "sigs.k8s.io/kwok/cmd/kwok" ;;
        *) return 1 ;;
    esac
}

missing() {
    local c
    for c in "${components[@]}"; do [ -x "$(binary_of "$c")" ] || echo "$c"; done
}

finish() {
    local c
    if [ "$print_paths" = 1 ]; then
        for c in "${components[@]}"; do echo "$c=$(binary_of "$c")"; done
    fi
    exit 0
}

# Everything runs from main, called on the last line: bash has then read the whole file, so editing
# this script while a build runs cannot change what the running build does.
main() {
    components=()
    print_paths=0
    for arg in "$@"; do
        case "$arg" in
            --paths) print_paths=1 ;;
            all) components+=("${all_components[@]}") ;;
            -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) package_of "$arg" >/dev/null || die "unknown component '$arg' (known: ${all_components[*]})"
               components+=("$arg") ;;
        esac
    done
    [ "${#components[@]}" -gt 0 ] || components=("${default_components[@]}")


    todo="$(missing)"
    [ -n "$todo" ] || finish

    # --- Go toolchain --------------------------------------------------------------------------------
    go_cmd="${GO:-}"
    if [ -z "$go_cmd" ]; then
        go_cmd="$(command -v go || true)"
        [ -n "$go_cmd" ] || { [ -x /usr/local/go/bin/go ] && go_cmd=/usr/local/go/bin/go; } || true
    fi
    if [ -z "$go_cmd" ] || ! "$go_cmd" version >/dev/null 2>&1; then
        log "no Go toolchain found (looked at \$GO, PATH and /usr/local/go/bin/go)"
        exit 3
    fi
    go_version="$("$go_cmd" env GOVERSION)"   # e.g. go1.26.8
    oldest="$(printf '%s\n%s\n' "$GO_MIN_VERSION" "${go_version#go}" | sort -V | head -n1)"
    if [ "$oldest" != "$GO_MIN_VERSION" ]; then
        log "Go $go_version is older than go $GO_MIN_VERSION, which Kubernetes $KUBE_VERSION needs"
        exit 3
    fi

    export GOMODCACHE="$cache/go/mod"
    export GOCACHE="$cache/go/build"
    # Never fetch another toolchain; never let a vendor/ or user GOFLAGS change the build.
    export GOTOOLCHAIN=local
    export GOFLAGS="-modcacherw -buildvcs=false"
    export CGO_ENABLED=0
    mkdir -p "$GOMODCACHE" "$GOCACHE"

    # One build at a time per cache: concurrent test sessions wait here instead of racing.
    exec 9>"$cache/build.lock"
    flock 9
    todo="$(missing)"
    [ -n "$todo" ] || finish

    go() { nice -n 10 "$go_cmd" "$@"; }
    started=$SECONDS

    needs_wrapper=0
    for c in $todo; do [ "$c" = kwok ] || needs_wrapper=1; done

    # --- wrapper module --------------------------------------------------------------------------------
    if [ "$needs_wrapper" = 1 ] && { [ ! -s "$wrapper/go.sum" ] || [ ! -f "$wrapper/.complete" ]; }; then
        mkdir -p "$wrapper"
        log "resolving k8s.io/kubernetes@$KUBE_VERSION (Go $go_version)"
        kube_gomod="$(cd / && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
            | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
        [ -s "$kube_gomod" ] || die "could not download the go.mod of k8s.io/kubernetes@$KUBE_VERSION"
        # Staging modules are exactly those the release replaces with ./staging/src/k8s.io/NAME.
        staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\1#p' "$kube_gomod" \
            | sort -u)"
        [ -n "$staging" ] || die "no staging replace lines found in $kube_gomod"
        minor_patch="${KUBE_VERSION#v1.}"   # 36.3
        {
            echo "// Generated by testbed/kube/build.sh; do not edit (it is rewritten on the next build)."
            echo "module faultmesh.test/testbed/kube"
            echo
            echo "go $GO_MIN_VERSION"
            echo
            echo "require ("
            echo "	k8s.io/kubernetes $KUBE_VERSION"
            echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
            echo ")"
            echo
            echo "replace ("
            for module in $staging; do echo "	$module => $module v0.$minor_patch"; done
            echo ")"
        } >"$wrapper/go.mod"
        {
            echo "//go:build tools"
            echo
            echo "// Package tools names every command the test-bed builds, so go mod tidy records their deps."
            echo "package tools"
            echo
            echo "import ("
            for c in "${all_components[@]}"; do
                [ "$c" = kwok ] || echo "	_ \"$(package_of "$c")\""
            done
            echo ")"
        } >"$wrapper/tools.go"
        rm -f "$wrapper/go.sum"
        log "go mod tidy in $wrapper ($(echo "$staging" | wc -l) staging modules pinned to v0.$minor_patch)"
        (cd "$wrapper" && go mod tidy)
        touch "$wrapper/.complete"
    fi

    if [ "$needs_wrapper" = 1 ]; then
        # The wrapper resolves etcd by minimal version selection; make sure it is the pinned one.
        resolved_etcd="$(cd "$wrapper" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)"
        [ "$resolved_etcd" = "$ETCD_VERSION" ] || die "the wrapper resolved etcd $resolved_etcd, not the" \
            "pinned $ETCD_VERSION: set ETCD_VERSION in versions.env to what kubernetes $KUBE_VERSION needs"
    fi

    # --- binaries --------------------------------------------------------------------------------------
    build_date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' \
        "$GOMODCACHE/cache/download/k8s.io/kubernetes/@v/$KUBE_VERSION.info" 2>/dev/null || true)"
    kube_minor="${KUBE_VERSION#v1.}"; kube_minor="${kube_minor%%.*}"
    kube_ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
        kube_ldflags+=" -X $pkg.gitTreeState=clean"
        [ -z "$build_date" ] || kube_ldflags+=" -X $pkg.buildDate=$build_date"
    done

    for c in $todo; do
        pkg="$(package_of "$c")"
        out="$(binary_of "$c")"
        mkdir -p "$(dirname "$out")"
        log "building $c ($pkg)"
        t0=$SECONDS
        case "$c" in
            kwok)
                # kwok's release has no replace lines, so a plain `go install` builds it with its own pins.
                gobin="$(mktemp -d "$kwok_root/.gobin.XXXXXX")"
                (cd / && GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "$pkg@$KWOK_VERSION")
                # kwok simulates nothing without Stage objects: keep the release's "fast" set (the
                # one kwokctl uses) beside the binary, written first so the binary's presence implies it.
                kwok_src="$(cd / && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
                    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
                for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
                             pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
                    echo "---"
                    cat "$kwok_src/kustomize/stage/$stage.yaml"
                done >"$(dirname "$out")/kwok-stages.yaml"
                mv -f "$gobin/kwok" "$out"
                rmdir "$gobin" ;;
            etcd)   # etcd carries its version as a constant
                (cd "$wrapper" && go build -trimpath -ldflags "-s -w" -o "$out.tmp" "$pkg")
                mv -f "$out.tmp" "$out" ;;
            *)
                (cd "$wrapper" && go build -trimpath -ldflags "$kube_ldflags" -o "$out.tmp" "$pkg")
                mv -f "$out.tmp" "$out" ;;
        esac
        log "built $c in $((SECONDS - t0)) s"
    done
    log "done in $((SECONDS - started)) s"
    finish
}

main "$@"
