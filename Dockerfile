# One image for the orch CLI, workers and Flower (GPU workers get the CUDA build of torch from PyPI).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator orchestrator
COPY worker worker
COPY shared shared
RUN pip install --no-cache-dir . && useradd --create-home orch
USER orch
ENV ORCH_HOME=/home/orch/.orch
ENTRYPOINT ["orch"]
