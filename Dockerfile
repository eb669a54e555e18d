# syntax=docker/dockerfile:1
# kdns container image. No image is published: build it and push it to your own registry,
# then name it in manifests/kustomization.yaml `images:` (docs/deploying.md):
#
#   docker build -t registry.example.com/kdns:0.1.0 .
#   docker push registry.example.com/kdns:0.1.0
#
# It runs `kdns serve -c /etc/kdns/kdns.toml` (the ConfigMap's file) as UID 65532.
#
# Stage 1 builds wheels of kdns and every dependency (uvloop included) with pip's full toolchain;
# stage 2 installs only those wheels, so the image carries no build cache or source tree.

FROM python:3.11-slim AS build
WORKDIR /src
# What `pip wheel .` needs: the project metadata (README.md is its long description, LICENSE goes
# into the wheel) and the package.
COPY pyproject.toml README.md LICENSE ./
COPY kdns ./kdns
RUN pip wheel --no-cache-dir --wheel-dir /wheels . uvloop

FROM python:3.11-slim
# No .pyc writes at run time (the root filesystem is read-only in the Deployment; pip compiled the
# bytecode at install), and log lines leave the process as they are written.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels kdns uvloop
# Non-root, numerically, so `runAsNonRoot: true` can verify it without an /etc/passwd entry:
# 65532 is the distroless "nonroot" UID and the Deployment's runAsUser/runAsGroup.
USER 65532:65532
# DNS on a high port (no NET_BIND_SERVICE; the kube-dns Service maps 53 to it), then metrics,
# /health and /ready.
EXPOSE 5353/udp 5353/tcp 9153/tcp 8080/tcp 8181/tcp
ENTRYPOINT ["kdns"]
CMD ["serve", "-c", "/etc/kdns/kdns.toml"]
