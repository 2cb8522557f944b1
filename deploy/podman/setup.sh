#!/usr/bin/env bash
# Podman for the container stack, on a fresh Debian machine (`make test-deploy` runs this):
#  1. the Debian packages podman needs here, when one is missing;
#  2. podman-compose from PyPI, into the project's .venv (PYTHON names its interpreter);
#  3. the base image localhost/debian:bookworm-slim, built with debootstrap from the mirror
#     apt uses on this machine (no container registry is needed), unless it already exists.
# Podman reads deploy/podman/containers.conf: export CONTAINERS_CONF=<that path> for any
# podman command of your own (the Makefile does it for its targets).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF="$here/containers.conf"
PYTHON=${PYTHON:-$root/.venv/bin/python}
BASE_IMAGE=${DISTSHOT_BASE_IMAGE:-localhost/debian:bookworm-slim}
SUITE=bookworm
PACKAGES="podman buildah debootstrap runc uidmap slirp4netns fuse-overlayfs netavark aardvark-dns iptables"

rootfs=""
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

log() { echo "setup-podman: $*" >&2; }

install_packages() {
    local missing="" p
    for p in $PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        log "installing Debian packages:$missing"
        $SUDO apt-get update -q
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
    fi
}

install_compose() {
    if ! "$PYTHON" -c 'import podman_compose' 2>/dev/null; then
        log "installing podman-compose into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
        "$PYTHON" -m pip install -q 'podman-compose>=1.2'
    fi
}

# The first "deb" mirror for SUITE that apt uses here (deb822 .sources or one-line lists);
# its sibling for security updates.
apt_mirror() {
    local kind=$1 uri
    uri=$(
        {
            for f in /etc/apt/sources.list.d/*.sources; do
                [ -f "$f" ] || continue
                awk -v want="$kind" '
                    function flush() {
                        if (uris != "" && types ~ /(^| )deb( |$)/) {
                            if ((want == "security") == (suites ~ /-security/)) print uris
                        }
                        types = ""; uris = ""; suites = ""
                    }
                    /^[[:space:]]*$/ { flush(); next }
                    /^Types:/ { sub(/^Types:[[:space:]]*/, ""); types = $0 }
                    /^URIs:/ { uris = $2 }
                    /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
                    END { flush() }' "$f"
            done
            cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                awk -v want="$kind" '$1 == "deb" {
                    i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                    if ((want == "security") == ($(i+1) ~ /-security/)) print $i }'
        } | head -n 1
    )
    if [ -z "$uri" ]; then
        if [ "$kind" = security ]; then uri=http://deb.debian.org/debian-security; else uri=http://deb.debian.org/debian; fi
    fi
    echo "${uri%/}"
}

build_base_image() {
    if podman image exists "$BASE_IMAGE"; then
        return
    fi
    local mirror security started
    mirror=$(apt_mirror main)
    security=$(apt_mirror security)
    rootfs=$(mktemp -d /var/tmp/distshot-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    started=$(date +%s)
    log "building $BASE_IMAGE with debootstrap from $mirror"
    # The slim image's rules, from the start: no manuals, docs or translations.
    mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    $SUDO debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$mirror" >/dev/null
    # The files the excludes did not cover (debootstrap unpacks before dpkg reads them).
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/*
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    # apt inside the image: this machine's mirror, no caches kept in layers.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-no-languages" <<'EOF'
Acquire::Languages "none";
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes" <<'EOF'
Acquire::GzipIndexes "true";
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests" <<'EOF'
Apt::AutoRemove::SuggestsImportant "false";
EOF
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache
    : >"$rootfs/etc/hostname"
    : >"$rootfs/etc/resolv.conf"
    tar --numeric-owner -C "$rootfs" -c . |
        podman import --quiet --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$BASE_IMAGE" >/dev/null
    log "built $BASE_IMAGE in $(($(date +%s) - started)) s"
}

install_packages
install_compose
build_base_image
