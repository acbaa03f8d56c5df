#!/usr/bin/env bash
# Installs everything ringside needs to build and test on Debian bookworm (as root):
# the Debian packages, and Consul 1.8.7 from Debian bullseye into .deps/consul without
# touching the system's apt sources. Idempotent: a second run with everything present
# only checks and returns.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deps="$top/.deps"

packages=(
    build-essential cmake ninja-build pkg-config clang clang-tidy clang-format
    libclang-rt-14-dev
    libuv1-dev libjansson-dev libhiredis-dev libcurl4-openssl-dev libssl-dev libcmocka-dev
    libxxhash-dev libmemcached-dev
    redis-server redis-tools nutcracker python3 python3-redis python3-yaml
    prometheus yamllint systemd valgrind curl ca-certificates openssl time procps
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: must run as root to install packages" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts these on install; tests start their own on free ports.
    for svc in redis-server nutcracker prometheus prometheus-node-exporter; do
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
            systemctl stop "$svc" || true
            systemctl disable "$svc" >/dev/null 2>&1 || true
        fi
    done
else
    echo "install-deps: Debian packages present"
fi

# Consul is not in bookworm; bullseye ships 1.8.7. Fetch the .deb with a private apt
# configuration (its own sources list, lists and cache under .deps/apt) and unpack it.
consul="$deps/consul/usr/bin/consul"
consul_version=$("$consul" version 2>/dev/null || true)
if [[ "$consul_version" == *"v1.8.7"* ]]; then
    echo "install-deps: consul present ($consul)"
else
    echo "install-deps: fetching consul from Debian bullseye"
    apt_dir="$deps/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc/preferences.d" "$deps/debs"
    # The machine's own Debian mirror (deb822 or one-line format), else the default.
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
             | grep -E '^[[:space:]]*(URIs:|deb )' | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bullseye main" > "$apt_dir/sources.list"
    apt_opts=(
        -o "Dir::Etc::SourceList=$apt_dir/sources.list"
        -o "Dir::Etc::SourceParts=-"
        -o "Dir::Etc::Preferences=$apt_dir/etc/preferences"
        -o "Dir::Etc::PreferencesParts=$apt_dir/etc/preferences.d"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache"
        -o "APT::Get::List-Cleanup=0"
        -o "APT::Sandbox::User=root"
    )
    apt-get "${apt_opts[@]}" update -qq
    (cd "$deps/debs" && rm -f consul_*.deb && apt-get "${apt_opts[@]}" download consul)
    rm -rf "$deps/consul"
    dpkg-deb -x "$deps/debs"/consul_*.deb "$deps/consul"
    # Not "| head -n1": with pipefail, consul's SIGPIPE would fail the script.
    consul_version=$("$consul" version)
    echo "install-deps: ${consul_version%%$'\n'*}"
fi
