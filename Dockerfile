FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY oms ./oms
COPY act ./act
COPY hms_oms ./hms_oms
COPY hms_act ./hms_act
COPY examples ./examples
RUN pip install --no-cache-dir . flower
ENV PYTHONPATH=/app
