# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SCOPEWEB_DATA_DIR=/data SCOPEWEB_STATIC_ROOT=/app/staticfiles
RUN apt-get update && apt-get install -y --no-install-recommends \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b fonts-dejavu-core poppler-utils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY scopeweb ./scopeweb
COPY traces ./traces
COPY reports ./reports
COPY governance ./governance
COPY gates ./gates
COPY tracer ./tracer
COPY gatecli ./gatecli
COPY saes ./saes
# The CPU wheel of torch; a CUDA image sets TORCH_INDEX to the matching PyTorch index.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --extra-index-url "$TORCH_INDEX" .
COPY manage.py ./
COPY templates ./templates
COPY static ./static
RUN useradd --create-home --uid 1000 scope && mkdir -p /data && chown scope /data \
    && SCOPEWEB_SECRET_KEY=build-only python manage.py collectstatic --no-input
USER scope
VOLUME ["/data"]
EXPOSE 8000
CMD ["gunicorn", "scopeweb.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
