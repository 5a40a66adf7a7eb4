# What every testbed/*/build.sh shares: the cache, logging, the help text, the Go toolchain check, the Go
# environment and the build lock. Sourced, never run: the sourcing script sets `build_name` (the log
# prefix) before it sources this file.
# shellcheck shell=bash

cache="${FAULTMESH_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faultmesh/testbed}"

log() { printf '[%s-build %s] %s\n' "$build_name" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The build script's header comment (after the #! line, up to the first line that is not a comment),
# without its leading "# ".
print_help() {
    awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "${BASH_SOURCE[-1]}"
}

# The `[--path]` command line of a script that builds one binary: sets print_path.
parse_path_flag() {
    print_path=0
    local arg
    for arg in "$@"; do
        case "$arg" in
            --path) print_path=1 ;;
            -h|--help) print_help; exit 0 ;;
            *) die "unknown argument '$arg' (known: --path)" ;;
        esac
    done
}

# The end of a one-binary build: its path when --path asked for it.
finish_binary() {
    [ "$print_path" = 0 ] || echo "$binary"
    exit 0
}

# require_go MIN_VERSION WHAT: sets go_cmd and go_version, or exits 3 (the caller may skip) when there is
# no Go toolchain at least MIN_VERSION, which WHAT ("helm v3.22.0") needs.
require_go() {
    local min_version="$1" what="$2" oldest
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
    oldest="$(printf '%s\n%s\n' "$min_version" "${go_version#go}" | sort -V | head -n1)"
    if [ "$oldest" != "$min_version" ]; then
        log "Go $go_version is older than go $min_version, which $what needs"
        exit 3
    fi
}

# use_go_env CGO_ENABLED: the environment of every build. The module and build caches are shared by all
# test-bed builds, so a dependency two of them share downloads and compiles once.
use_go_env() {
    export GOMODCACHE="$cache/go/mod"
    export GOCACHE="$cache/go/build"
    # Never fetch another toolchain; never let a vendor/ or user GOFLAGS change the build.
    export GOTOOLCHAIN=local
    export GOFLAGS="-modcacherw -buildvcs=false"
    export CGO_ENABLED="$1"
    mkdir -p "$GOMODCACHE" "$GOCACHE"
}

# take_build_lock FILE: one build at a time per FILE; concurrent sessions wait here instead of racing.
take_build_lock() {
    mkdir -p "$(dirname "$1")"
    exec 9>"$1"
    flock 9
}

# The go command, at a lower priority so that a build leaves the machine usable.
go() { nice -n 10 "$go_cmd" "$@"; }
