# syntax=docker/dockerfile:1
# The Airflow image for Registry Lifecycle: the official Airflow 3.3.2 image plus this
# package, installed at exactly the versions in uv.lock (the ones `make test` ran).
#
#   docker build -t registry-lifecycle/airflow:dev .
#
# Why two stages and pip: uv.lock is uv's own format, and the uv that wrote it (0.13.9) is not
# necessarily the one inside the Airflow image, so a throwaway stage with the pinned uv turns
# the lock into a plain, hash-pinned requirements file. The final stage installs it with the
# image's pip, which knows the image's layout (user site under /home/airflow/.local, as the
# airflow user; the docs forbid pip as root there).

ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

# --- 1. uv.lock -> requirements.lock.txt ---------------------------------------------------
FROM ${AIRFLOW_IMAGE} AS lock
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /tmp/lock
COPY pyproject.toml uv.lock ./
# --no-dev: pytest and moto stay out of production. --no-emit-project: the project itself is
# installed from source below. --frozen: use the lock as written, never re-resolve.
RUN python -m uv export --frozen --no-dev --no-emit-project --format requirements-txt \
        --output-file /tmp/lock/requirements.lock.txt

# --- 2. the runtime image ------------------------------------------------------------------
FROM ${AIRFLOW_IMAGE}

# WeasyPrint, which renders the compliance report's PDF, loads Pango (and HarfBuzz' subsetter)
# at run time, and needs a font for the text. The official image runs as airflow: apt as root.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
       fonts-dejavu-core \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --from=lock /tmp/lock/requirements.lock.txt /tmp/requirements.lock.txt

# Airflow is not replaced: the lock pins apache-airflow==3.3.2, the version this image already
# has, so pip keeps it. The lock is the exact closure of our dependencies (hash-checked, so
# --no-deps is safe); where it differs from the image's own pins (e.g. a newer
# providers-standard for the HITL ApprovalOperator) the locked, tested version wins.
# `pip check` then fails the build if that broke a provider the image ships that our lock does
# not know about (celery, fab, postgres, ...): the fix is to add that provider to
# pyproject.toml so that uv resolves it together with ours, never to drop the check.
RUN pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements.lock.txt \
    && pip check \
    && python -c "import airflow; assert airflow.__version__ == '3.3.2', airflow.__version__"

# The package itself, non-editable, without touching any dependency again.
COPY --chown=airflow:0 pyproject.toml README.md /tmp/registry-lifecycle/
COPY --chown=airflow:0 include/registry_lifecycle /tmp/registry-lifecycle/include/registry_lifecycle
RUN pip install --no-cache-dir --no-deps /tmp/registry-lifecycle \
    && reglife --version

# DAGs, the UI plugin and the default policy at the paths Airflow and REGLIFE_POLICY expect.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/policies/ /opt/airflow/include/policies/

# Mount point of the compose stack's sandbox volume: created here, owned by airflow, so that
# a fresh named volume inherits an owner the sandbox (running as airflow) can write as.
RUN mkdir -p /opt/airflow/sandbox

ENV REGLIFE_POLICY=/opt/airflow/include/policies/default.yaml
