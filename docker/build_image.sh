#!/usr/bin/env bash
# Build the image synaptech/bids:<version> (and :latest) from the top-level
# Dockerfile, with Docker where a Docker engine answers, else with Podman
# (`make image` runs this). Prints the build time, the image's size and its
# torch build.
#
#   docker/build_image.sh [EXTRA BUILD OPTIONS...]     e.g. --no-cache
#
# Environment:
#   ENGINE           docker | podman (default: docker if `docker info` answers,
#                    else podman, prepared by docker/prepare_podman.sh: runc,
#                    cgroupfs, and a base image made with debootstrap when no
#                    image registry can be reached)
#   IMAGE            image name (default synaptech/bids)
#   TORCH_INDEX_URL  where torch comes from (the Dockerfile's build argument).
#                    Unset: PyTorch's CPU index when it answers; otherwise a
#                    local CPU wheel of the Dockerfile's TORCH_VERSION found
#                    in pip's find-links (`pip config list`), mounted into the
#                    build (Podman) or copied into docker/wheels/ (Docker).
#                    A host folder of wheels may be given here too.
#   PIP_CERT         CA bundle pip must trust (default: pip's `cert` setting);
#                    with Podman it is mounted into the build, with pip told
#                    to use it, for package registries behind a TLS proxy.
#
# Without any of these, on a machine with Docker and the internet, this is
# just `docker build -t synaptech/bids:<version> -t synaptech/bids:latest .`
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
IMAGE=${IMAGE:-synaptech/bids}
PYTHON=${PYTHON:-python3}
CPU_INDEX=https://download.pytorch.org/whl/cpu

say() { echo "build_image: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

VERSION=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' synaptech_bids/_version.py)
[ -n "$VERSION" ] || die "no __version__ in synaptech_bids/_version.py"
TORCH_VERSION=$(sed -n 's/^ARG TORCH_VERSION=//p' Dockerfile | head -1)

# The engine -------------------------------------------------------------------
if [ -z "${ENGINE:-}" ]; then
    if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1 \
            && ! docker --version 2>/dev/null | grep -qi podman; then
        ENGINE=docker
    else
        ENGINE=podman
    fi
fi
case "$ENGINE" in
    docker) ;;
    podman) bash "$ROOT/docker/prepare_podman.sh" ;;
    *) die "ENGINE must be docker or podman, not '$ENGINE'" ;;
esac

args=(--build-arg "VERSION=$VERSION" -f Dockerfile)
tags=(-t "$IMAGE:$VERSION" -t "$IMAGE:latest")
mounts=()   # podman build -v: for the build stage only (see below)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/synaptech-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# pip's own settings on this machine, e.g. "global.find-links='/opt/wheels'"
pip_setting() {
    "$PYTHON" -m pip config list 2>/dev/null \
        | sed -n "s/^[^.]*\.$1='\(.*\)'\$/\1/p" | head -1
}

# Where torch comes from ----------------------------------------------------------
torch_dir=""
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    # a folder on this machine: mounted (podman) or copied (docker) below
    [ -d "$TORCH_INDEX_URL" ] && torch_dir=$TORCH_INDEX_URL
elif curl -sSf -m 15 -o /dev/null "$CPU_INDEX/torch/" 2>/dev/null; then
    say "torch $TORCH_VERSION from PyTorch's CPU index"
else
    for dir in ${PIP_FIND_LINKS:-} $(pip_setting find-links); do
        dir=${dir#file://}
        if compgen -G "$dir/torch-$TORCH_VERSION+cpu-*.whl" >/dev/null; then
            torch_dir=$dir
            break
        fi
    done
    [ -n "$torch_dir" ] || die "PyTorch's CPU index ($CPU_INDEX) cannot be reached and \
no torch-$TORCH_VERSION+cpu wheel is in pip's find-links: set TORCH_INDEX_URL"
    say "PyTorch's CPU index cannot be reached: torch from the local wheel in $torch_dir"
fi
if [ -n "$torch_dir" ]; then
    if [ "$ENGINE" = podman ]; then
        mounts+=(-v "$(cd "$torch_dir" && pwd):/opt/torch-wheels:ro")
        args+=(--build-arg TORCH_INDEX_URL=/opt/torch-wheels)
    else
        # docker build cannot mount: the wheel goes through docker/wheels/
        # (git-ignored), which the Dockerfile copies to /opt/wheels.
        cp -u "$torch_dir"/torch-"$TORCH_VERSION"+cpu-*.whl docker/wheels/ 2>/dev/null \
            || cp -u "$torch_dir"/torch-"$TORCH_VERSION"*.whl docker/wheels/
        args+=(--build-arg TORCH_INDEX_URL=/opt/wheels)
    fi
elif [ -n "${TORCH_INDEX_URL:-}" ]; then
    args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
fi

# Podman: host network, and the CA bundle that pip trusts here ----------------------
if [ "$ENGINE" = podman ]; then
    args+=(--network host)
    cert=${PIP_CERT:-$(pip_setting cert)}
    if [ -n "$cert" ] && [ -f "$cert" ]; then
        # pip inside reads /etc/pip.conf; both files are mounted for the RUN
        # steps only and never enter a layer.
        printf '[global]\ncert = /run/synaptech-ca.crt\ntimeout = 180\n' >"$tmp/pip.conf"
        index=$(pip_setting index-url)
        case "$index" in
            http://*|https://*) printf 'index-url = %s\n' "$index" >>"$tmp/pip.conf" ;;
        esac
        mounts+=(-v "$(readlink -f "$cert"):/run/synaptech-ca.crt:ro"
                 -v "$tmp/pip.conf:/etc/pip.conf:ro")
        say "pip in the build trusts $cert"
    fi
fi

cold=0
for option in "$@"; do
    case "$option" in --no-cache|--no-cache=true) cold=1 ;; esac
done
if [ "$ENGINE" = podman ] && [ ${#mounts[@]} -gt 0 ] && [ $cold = 1 ]; then
    # A cold build with the two passes below: buildah matches a later build
    # against the first cached chain it finds, not the one --no-cache just
    # made, so --no-cache is done by dropping this image and the dangling
    # images of the layer cache first (`podman image prune`), then building
    # with the cache, which is now empty.
    say "cold build: removing $IMAGE and the layer cache (podman image prune)"
    "$ENGINE" rmi -f "$IMAGE:$VERSION" "$IMAGE:latest" >/dev/null 2>&1 || true
    "$ENGINE" image prune -f >/dev/null
    kept=()
    for option in "$@"; do
        case "$option" in --no-cache|--no-cache=true) ;; *) kept+=("$option") ;; esac
    done
    set -- "${kept[@]}"
fi

start=$(date +%s.%N)
if [ ${#mounts[@]} -gt 0 ]; then
    # `podman build -v` mounts into every RUN of every stage and leaves the
    # empty mount points in the layers. So the build stage, which needs the
    # mounts, is built first with them; then the whole image without them:
    # the build stage comes from the layer cache and the final stage stays
    # clean.
    say "podman build --target build ${args[*]} ${mounts[*]} $*"
    "$ENGINE" build --target build "${args[@]}" "${mounts[@]}" "$@" "$ROOT"
fi
say "$ENGINE build ${tags[*]} ${args[*]} $*"
"$ENGINE" build "${tags[@]}" "${args[@]}" "$@" "$ROOT"
end=$(date +%s.%N)

size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE:$VERSION")
torch=$("$ENGINE" run --rm --network none --entrypoint python "$IMAGE:$VERSION" \
    -c 'import torch; print(torch.__version__)')
awk -v s="$size" -v t0="$start" -v t1="$end" -v img="$IMAGE:$VERSION" -v torch="$torch" \
    -v engine="$ENGINE" 'BEGIN {
        printf "build_image: built %s with %s in %.0f s\n", img, engine, t1 - t0
        printf "build_image: image size %.2f GB (%d bytes)%s\n", s / 1e9, s,
            (s < 2e9 ? "" : "  -- over the 2 GB goal")
        printf "build_image: torch %s\n", torch
    }'
case "$torch" in
    *+cpu*) ;;
    *) [ -n "${TORCH_INDEX_URL:-}" ] || die "torch $torch is not the CPU build" ;;
esac
