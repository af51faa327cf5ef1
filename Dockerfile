# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GATEWAY_CONFIG=/etc/gateway/config.toml

RUN useradd --system --uid 10001 --home /var/lib/gateway gateway \
 && mkdir -p /var/lib/gateway /etc/gateway && chown gateway /var/lib/gateway

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
COPY keys ./keys
RUN pip install --no-cache-dir .

# The example config with container paths: data on the volume, listen on all interfaces.
COPY config.example.toml /etc/gateway/config.toml
RUN sed -i -e 's|^data_dir = .*|data_dir = "/var/lib/gateway"|' \
           -e 's|^listen = "127.0.0.1:8080"|listen = "0.0.0.0:8080"|' \
           -e 's|^listen = "127.0.0.1:9090"|listen = "0.0.0.0:9090"|' /etc/gateway/config.toml

USER gateway
VOLUME ["/var/lib/gateway"]
EXPOSE 8080 9090
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status == 200 else 1)"
CMD ["sh", "-c", "gateway init && exec gateway serve"]
