FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sendq sendq
COPY worker worker
COPY scheduler scheduler
COPY providers providers
RUN pip install --no-cache-dir .
USER nobody
CMD ["sendq", "worker"]
