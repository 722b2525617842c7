# syntax=docker/dockerfile:1
# The Vigil image: Airflow 3, the Celery provider and the Vigil package, with the locked
# dependencies. One image runs every Airflow component (`api-server`, `scheduler`,
# `celery worker --queues default`, ...) and the `vigil` CLI; see docker-compose.yml.
#
#   docker build -t vigil:latest .                         CPU build of torch (every service)
#   docker build -t vigil:latest-cuda \
#     --build-arg TORCH_INDEX_URL=https://pypi.org/simple .  CUDA build of torch (the gpu worker)
#
# Both install exactly the torch version pinned in requirements.lock; TORCH_INDEX_URL only
# chooses which build of it (a CUDA build index such as https://download.pytorch.org/whl/cu128
# matches a given driver).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG VIGIL_UID=50000

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    VIGIL_HOME=/var/lib/vigil \
    VIGIL_FILESTORE=/var/lib/vigil-files \
    VIGIL_MODELS_DIR=/opt/vigil/models \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/vigil/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/vigil/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=false \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_VERBOSITY=error

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl tini libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/vigil

COPY requirements.lock ./
RUN pip install --extra-index-url "${TORCH_INDEX_URL}" -r requirements.lock \
    && pip check

COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY sql ./sql
COPY models ./models
COPY dags ./dags
COPY plugins ./plugins
RUN pip install --no-deps -e . \
    && python -m compileall -q pipeline dags plugins

COPY docker/entrypoint.sh /usr/local/bin/vigil-entrypoint

RUN useradd --uid "${VIGIL_UID}" --gid 0 --create-home --home-dir /home/vigil --shell /bin/bash vigil \
    && mkdir -p /opt/airflow/logs /opt/airflow/auth /var/lib/vigil /var/lib/vigil-files \
    && chown -R "${VIGIL_UID}:0" /opt/airflow /var/lib/vigil /var/lib/vigil-files \
    && chmod -R g+rwX /opt/airflow /var/lib/vigil /var/lib/vigil-files \
    && chmod 0755 /usr/local/bin/vigil-entrypoint

USER ${VIGIL_UID}
WORKDIR /opt/airflow
EXPOSE 8080 8793 8974

ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/vigil-entrypoint"]
CMD ["--help"]
