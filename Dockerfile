# synaptech-bids: the BIDS-App as a container image, synaptech/bids:<version>.
#
#   docker build -t synaptech/bids:0.1.0 .                         # CPU (default)
#   docker build -t synaptech/bids:0.1.0-cu128 \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .   # CUDA
#   docker run --rm --read-only --tmpfs /tmp --user "$(id -u):$(id -g)" \
#       -v /data:/data:ro -v /out:/out synaptech/bids:0.1.0 /data /out participant
#
# Build arguments (see docs/containers.md):
#   VERSION          the version in the image name; must equal synaptech_bids/_version.py
#   TORCH_VERSION    the torch release, installed first
#   TORCH_INDEX_URL  where torch comes from: the CPU index (default) or a CUDA
#                    index of the same form, e.g. https://download.pytorch.org/whl/cu128,
#                    or a folder of wheels in the build (/opt/wheels: docker/wheels/)
#   PIP_FIND_LINKS   a folder of wheels searched as well as the indexes; the
#                    default /opt/wheels holds whatever lies in docker/wheels/
#   PIP_NO_INDEX     1: use only those wheels (offline build)
#
# Two stages: "build" makes the virtual environment /opt/venv; the final
# stage copies it onto the same base image with only the Python runtime, so
# no compiler, pip cache or wheel ends up in the image.

FROM docker.io/library/debian:bookworm-slim AS build

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=/opt/wheels
ARG PIP_NO_INDEX=0

# Debian's python3 metapackages keep these versions for all of bookworm.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3=3.11.2-1+b1 \
        python3-venv=3.11.2-1+b1 \
        python3-pip=23.0.1+dfsg-1 \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python3 -m venv /opt/venv

COPY docker/wheels/ /opt/wheels/
COPY docker/constraints.txt /opt/constraints.txt

# pip and setuptools at their pinned versions (setuptools builds the project
# below without build isolation, so that its version is pinned too); then
# torch, first, from its own index (CPU by default) and without dependencies:
# these come from PyPI in the next step, under the constraints.
# TORCH_INDEX_URL may also name a folder of wheels in the build (a path or a
# file:// URL, e.g. /opt/wheels, or one mounted with `podman build -v`):
# torch then comes from that folder only.
RUN pip install --no-cache-dir -c /opt/constraints.txt pip setuptools \
    && if [ -d "${TORCH_INDEX_URL#file://}" ]; then \
           export PIP_NO_INDEX=1 PIP_FIND_LINKS="${TORCH_INDEX_URL#file://}"; \
       fi \
    && pip install --no-cache-dir --no-deps \
        --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# Every other dependency at its pinned version, in a layer of its own: a
# change of the project's code then rebuilds only the small layer below,
# from the layer cache, without downloading the dependencies again.
RUN pip install --no-cache-dir -r /opt/constraints.txt

# The project, every other dependency pinned by the constraints file; the
# torch installed above satisfies the project's requirement and stays.
COPY pyproject.toml README.md /opt/src/
COPY synaptech_bids/ /opt/src/synaptech_bids/
RUN pip install --no-cache-dir --no-build-isolation -c /opt/constraints.txt /opt/src/ \
    && pip check \
    && python -c "import bids, mne, mne_bids, nibabel, pywt, safetensors, sklearn, torch" \
    && synaptech-bids --version


FROM docker.io/library/debian:bookworm-slim

ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="synaptech-bids" \
      org.opencontainers.image.description="BIDS-App that measures and translates the information shared by simultaneous EEG and MEG" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim" \
      org.opencontainers.image.ref.name="synaptech/bids:${VERSION}"

# The Python runtime only: the same python3 as in the build stage, which the
# virtual environment's interpreter links to.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3=3.11.2-1+b1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 synaptech \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin synaptech

COPY --from=build /opt/venv /opt/venv

# Everything a library may write goes to /tmp, so that the container runs
# with a read-only root (--read-only --tmpfs /tmp) and under any user id.
# MNE reads its configuration from $HOME, or from _MNE_FAKE_HOME_DIR, which
# Singularity, which replaces HOME with the host's, leaves alone.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    MNE_HOME=/tmp \
    _MNE_FAKE_HOME_DIR=/tmp \
    MNE_DATA=/tmp/mne_data \
    MPLCONFIGDIR=/tmp/matplotlib \
    MPLBACKEND=Agg \
    TORCH_HOME=/tmp/torch \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    NUMBA_CACHE_DIR=/tmp/numba \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SYNAPTECH_CONTAINER_IMAGE=synaptech/bids:${VERSION}

# uid:gid 1000:1000 is the user 'synaptech' created above.
USER 1000:1000
WORKDIR /tmp

ENTRYPOINT ["synaptech-bids"]
CMD ["--help"]
