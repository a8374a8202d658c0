# syntax=docker/dockerfile:1
# The `ioc` command in a container. One image per extras set:
#   docker build -t ioc:local .                                   # streams, alerts, db migrate
#   docker build -t ioc:local-vision --build-arg EXTRAS=vision \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .   # CPU-only vision worker
# Configure it only through IOC_* environment variables (see ioc/config.py and docker-compose.yml).

ARG PYTHON_IMAGE=python:3.12-slim

# --- build: a wheel of this checkout (README, tests and local state stay out: see .dockerignore) ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels .

# --- runtime ---
FROM ${PYTHON_IMAGE}

# Comma-separated extras of pyproject.toml, e.g. "vision".
ARG EXTRAS=""
# Extra package index, e.g. https://download.pytorch.org/whl/cpu for a CPU-only torch.
ARG TORCH_INDEX_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    YOLO_OFFLINE=1

# OpenCV (vision extra) loads libGL and GLib at import time; slim images have neither.
RUN case ",${EXTRAS}," in \
      *,vision,*) \
        apt-get update \
        && glib=libglib2.0-0 \
        && if apt-cache show libglib2.0-0t64 >/dev/null 2>&1; then glib=libglib2.0-0t64; fi \
        && apt-get install -y --no-install-recommends libgl1 "$glib" \
        && rm -rf /var/lib/apt/lists/* ;; \
    esac

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    wheel="$(ls /wheels/ioc-*.whl)"; \
    pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        "${wheel}${EXTRAS:+[${EXTRAS}]}"; \
    ioc --help >/dev/null

RUN useradd --create-home --home-dir /home/ioc --uid 10001 --user-group --shell /usr/sbin/nologin ioc
USER ioc
# Writable by the process: Faust keeps its table state under ./<app id>-data here.
WORKDIR /home/ioc

ENTRYPOINT ["ioc"]
CMD ["--help"]
