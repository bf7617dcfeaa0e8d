# The one image every kurastore process runs from: server, gateway, pod, operator, admin.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# libisal2: ISA-L computes the erasure code ~9x faster than zfec alone (erasure/_isal.py).
RUN apt-get update && apt-get install -y --no-install-recommends libisal2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
USER 65532:65532
ENTRYPOINT ["kurastore"]
