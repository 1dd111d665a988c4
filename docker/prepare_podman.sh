#!/usr/bin/env bash
# Make this machine able to build and run the image with Podman, where there
# is no Docker engine and no image registry can be reached (as on the
# project's CI machines). Idempotent: each step is skipped when already done.
#
#   1. Debian's podman, runc and debootstrap, installed with apt-get (as root)
#      when missing;
#   2. /etc/containers/containers.conf: runc with cgroupfs, no default ulimits
#      (crun and the systemd cgroup manager refuse these machines' cgroups);
#   3. the base image the Dockerfile's FROM names
#      (docker.io/library/debian:bookworm-slim): pulled when a registry
#      answers, otherwise made from Debian's packages with debootstrap
#      (--variant=minbase), imported and tagged with that name;
#   4. a check that a container starts: when it cannot, this script fails
#      with podman's reason.
#
# Usage: docker/prepare_podman.sh            (from anywhere)
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
#              PULL_TIMEOUT seconds for the registry attempt (default 60).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PULL_TIMEOUT=${PULL_TIMEOUT:-60}
CONF=/etc/containers/containers.conf

say() { echo "prepare_podman: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# The base image: what every FROM of the Dockerfile names (one image).
BASE=$(awk 'toupper($1) == "FROM" { print $2; exit }' "$ROOT/Dockerfile")
[ -n "$BASE" ] || die "no FROM in $ROOT/Dockerfile"
SUITE=${BASE##*:}          # bookworm-slim
SUITE=${SUITE%-slim}       # bookworm

# 1. packages ---------------------------------------------------------------
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "${missing[*]} missing and not root: sudo apt-get install ${missing[*]}"
    command -v apt-get >/dev/null || die "${missing[*]} missing and no apt-get to install them"
    say "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" uidmap >/dev/null
fi
export PATH=$PATH:/usr/sbin:/sbin

# 2. containers.conf --------------------------------------------------------
if ! grep -qs '^ *runtime *= *"runc"' "$CONF" \
        || ! grep -qs '^ *cgroup_manager *= *"cgroupfs"' "$CONF" \
        || ! grep -qs '^ *default_ulimits *= *\[ *\]' "$CONF"; then
    [ "$(id -u)" = 0 ] || die "$CONF lacks runc/cgroupfs/default_ulimits and not root"
    mkdir -p "$(dirname "$CONF")"
    if [ -s "$CONF" ]; then
        cp "$CONF" "$CONF.before-synaptech"
        say "replacing $CONF (the old one is $CONF.before-synaptech)"
    fi
    cat >"$CONF" <<'EOF'
# Written by synaptech-bids' docker/prepare_podman.sh: crun and the systemd
# cgroup manager refuse this machine's cgroups; runc with cgroupfs works.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
fi
podman info >/dev/null 2>&1 || die "podman does not work here: $(podman info 2>&1 | tail -3)"

# 3. the base image ---------------------------------------------------------
if podman image exists "$BASE"; then
    say "base image $BASE present"
elif timeout "$PULL_TIMEOUT" podman pull -q "$BASE" >/dev/null 2>&1; then
    say "base image $BASE pulled from its registry"
else
    say "no image registry answers: making $BASE from Debian's packages ($DEBIAN_MIRROR)"
    command -v debootstrap >/dev/null || die "debootstrap is needed to make the base image"
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    work=$(mktemp -d "${TMPDIR:-/tmp}/synaptech-rootfs.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    rootfs=$work/rootfs
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    # As Debian's official slim image: the same apt sources (with updates and
    # security), no documentation, manual pages or translations (also not for
    # packages installed later), no package lists or caches.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
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
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log \
        "$rootfs"/tmp/* "$rootfs"/root/.bash_history
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
        -exec rm -rf {} +
    local_name=${BASE#docker.io/library/}
    tar --numeric-owner -C "$rootfs" -c . \
        | podman import --change 'CMD ["bash"]' - "$local_name" >/dev/null
    podman tag "$local_name" "$BASE"
    say "base image $BASE made ($(podman image inspect --format '{{.Size}}' "$BASE" \
        | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
fi

# 4. can a container run? ---------------------------------------------------
if ! out=$(podman run --rm --network none "$BASE" true 2>&1); then
    die "podman cannot run a container on this machine: $out"
fi
say "podman runs containers (runtime $(podman info --format '{{.Host.OCIRuntime.Name}}'))"
