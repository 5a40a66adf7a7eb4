#!/usr/bin/env bash
# Install the Debian packages the node, kernel and cluster tiers need, when missing. Idempotent; as root.
# A non-root run only reports what is missing (the tiers that need root then skip, saying why).
set -euo pipefail

# command -> package
declare -A wanted=(
    [ip]=iproute2
    [nft]=nftables
    [iptables]=iptables
    [ipset]=ipset
    [nsenter]=util-linux
    [stress-ng]=stress-ng
    [containerd]=containerd
    [runc]=runc
    [qemu-system-x86_64]=qemu-system-x86
    [openssl]=openssl
    [flock]=util-linux
    [dockerd]=docker.io
)

missing=()
for command in "${!wanted[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${wanted[$command]}")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" != 0 ]; then
    echo "sysdeps: not root; missing packages: ${missing[*]} (the root-only tiers will skip)" >&2
    exit 0
fi
echo "sysdeps: installing ${missing[*]}" >&2
lock=/var/lock/faultmesh-apt.lock
export DEBIAN_FRONTEND=noninteractive
flock "$lock" apt-get update -q >/dev/null
# Packages with services (docker.io's dockerd) must not start them: a system dockerd would add its own bridge
# and iptables rules to the host. Tests start private daemons. policy-rc.d vetoes starts during the install.
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
fi
trap '[ -n "$guard" ] && rm -f "$guard"' EXIT
flock "$lock" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
