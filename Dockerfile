# syntax=docker/dockerfile:1
# One image for every process of the Procfile, picked by the first argument (see
# docker/entrypoint.sh): web (default), worker, flower, release, gpu-worker, up, or any
# command.
#
#   docker build -t chatbot .                                   # CPU workers
#   docker build -t chatbot:cuda --build-arg VARIANT=cuda .     # GPU workers too
#   docker run -p 8000:8000 -e DATABASE_URL=… -e REDIS_URL=… chatbot web
#   docker run -e DATABASE_URL=… -e REDIS_URL=… chatbot worker
#   docker run --gpus all -e DATABASE_URL=… -e REDIS_URL=… chatbot:cuda gpu-worker
#   docker run -p 8000:8000 chatbot up                          # all in one, for a try
#
# VARIANT=cuda adds ctransformers' CUDA build (the CUDA 12 runtime and cuBLAS come as pip
# wheels; the driver comes from the host through the NVIDIA Container Toolkit).
# The default model is pulled at build time into /data (PULL_MODEL="" skips it); mount a
# volume on /data to keep other models (workers pull MODEL there on start).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/chatbot
ENV PATH=/opt/chatbot/bin:$PATH
WORKDIR /app
# Dependencies alone first: this layer is reused while only the code changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && if [ "$VARIANT" = "cuda" ]; then pip install "ctransformers[cuda]==0.2.27"; \
    elif [ "$VARIANT" != "cpu" ]; then echo "VARIANT must be cpu or cuda" >&2; exit 1; fi
COPY README.md Procfile alembic.ini celeryconfig.py ./
COPY alembic alembic
COPY shared shared
COPY web web
COPY worker worker
COPY docker docker
# Editable: the code stays in /app, where the CLI finds alembic.ini and the Procfile.
RUN pip install --no-deps -e . && chmod 0755 docker/entrypoint.sh

FROM ${PYTHON_IMAGE} AS runtime
ARG PULL_MODEL=smollm2
ENV PATH=/opt/chatbot/bin:$PATH \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data HOST=0.0.0.0 PORT=8000 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN groupadd --gid 10001 chatbot \
 && useradd --uid 10001 --gid chatbot --no-create-home --home-dir /data chatbot \
 && mkdir -p /data && chown chatbot:chatbot /data
COPY --from=build /opt/chatbot /opt/chatbot
COPY --from=build /app /app
WORKDIR /app
USER 10001:10001
RUN if [ -n "$PULL_MODEL" ]; then python -m shared.cli models pull "$PULL_MODEL" --quiet; fi
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
