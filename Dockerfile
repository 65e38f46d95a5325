# The engine and the lab's examples, for docker-compose.yml's oms, act, api and flower services.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY oms ./oms
COPY act ./act
COPY hms_oms ./hms_oms
COPY hms_act ./hms_act
RUN pip install --no-cache-dir '.[flower]'
COPY examples ./examples
ENV PYTHONPATH=/app PYTHONUNBUFFERED=1
# Celery refuses to be comfortable as root; the beat schedule goes to /tmp (see docker-compose.yml).
RUN useradd --create-home --uid 1000 oms
USER oms
