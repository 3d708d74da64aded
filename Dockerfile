# kuik: one image, three entry points (kuik-webhook, kuik-replicator, kuik-monitor) and the
# `kuik` CLI. See docs/architecture.md "Chart and images" for why one image.
#
#   docker build -t kube-image-keeper .
#   docker build --build-arg BASE_IMAGE=localhost/debian-base -t kube-image-keeper .
#
# BASE_IMAGE is any Debian bookworm image; Python comes from Debian's python3 in both stages,
# so the build is the same with the public slim image and with a local `mmdebstrap` base.
# Works with BuildKit and with the classic builder (docker-compose 1.29 builds with it).

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# EXTRA_CA_CERTS: PEM certificates trusted by this stage only (a TLS-intercepting proxy on the
# way to PyPI). They never reach the final image.
ARG EXTRA_CA_CERTS=""
ARG UV_VERSION=0.13.9
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && if [ -n "$EXTRA_CA_CERTS" ]; then \
      printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/build-extra.crt \
      && update-ca-certificates >/dev/null; \
    fi \
 && python3 -m venv /opt/uv \
 && PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/uv/bin/pip install --quiet --no-cache-dir "uv==${UV_VERSION}"
ENV UV_PYTHON=/usr/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/kuik \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_NATIVE_TLS=1
WORKDIR /src
# The runtime only: the three services and what they need (kuikcore). Not kuik-testing, not the
# dev group (pytest, oras for the benchmarks...).
ENV RUNTIME_PACKAGES="--package kuik-webhook --package kuik-replicator --package kuik-monitor"
# Third-party dependencies first, from the lock file only: this layer survives source edits.
COPY pyproject.toml uv.lock ./
COPY libs/kuikcore/pyproject.toml libs/kuikcore/
# the test and demo harnesses are a workspace member: uv reads its pyproject, never installs it
COPY libs/kuik-testing/pyproject.toml libs/kuik-testing/
COPY services/webhook/pyproject.toml services/webhook/
COPY services/replicator/pyproject.toml services/replicator/
COPY services/monitor/pyproject.toml services/monitor/
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace --no-editable $RUNTIME_PACKAGES
COPY libs/kuikcore/src libs/kuikcore/src
COPY services/webhook/src services/webhook/src
COPY services/replicator/src services/replicator/src
COPY services/monitor/src services/monitor/src
# botocore carries the API models of every AWS service (28 MB); kuik calls two (ECR's token and
# repository creation, STS's web identity exchange: docs/registries.md). tests/images builds
# both clients in the image, so a model kuik needs cannot go missing unnoticed.
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-editable $RUNTIME_PACKAGES \
 && find /opt/kuik/lib/python3*/site-packages/botocore/data -mindepth 1 -maxdepth 1 -type d \
      ! -name ecr ! -name sts -exec rm -rf {} + \
 && /opt/kuik/bin/kuik-webhook --help >/dev/null

# The final image: the base, Debian's python3 (the interpreter /opt/kuik links to, at the same
# path as in the build stage), CA certificates for registries over HTTPS, and the venv.
# Built in parallel with the build stage by BuildKit.
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
# The git commit and the build time (RFC 3339), e.g.
#   --build-arg KUIK_BUILD_REVISION=$(git rev-parse HEAD) --build-arg KUIK_BUILD_DATE=$(date -u +%FT%TZ)
# They reach the build_info metric (as variables) and the OCI labels below.
ARG KUIK_BUILD_REVISION=""
ARG KUIK_BUILD_DATE=""
COPY --from=build /opt/kuik /opt/kuik
ENV PATH=/opt/kuik/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KUIK_BUILD_REVISION=${KUIK_BUILD_REVISION} \
    KUIK_BUILD_DATE=${KUIK_BUILD_DATE}
# 65532: the same non-root uid as upstream's distroless image, so existing PodSecurity and
# securityContext settings carry over. No home, no shell login; the root filesystem can be read-only.
USER 65532:65532
WORKDIR /
EXPOSE 8080 9443
CMD ["kuik", "--help"]
# OCI annotations, so registries and scanners can tell what the image is without running it.
# KUIK_VERSION is the packages' version (tests/images checks it against `kuik --version`);
# labels come last so that changing them rebuilds no layer.
ARG KUIK_VERSION=0.1.0
ARG KUIK_SOURCE=https://github.com/enix/kube-image-keeper
LABEL org.opencontainers.image.title="kube-image-keeper" \
      org.opencontainers.image.description="kuik: a mutating webhook routing Pod images to available mirrors, a replicator mirroring the images in use, a monitor tracking their availability" \
      org.opencontainers.image.source="${KUIK_SOURCE}" \
      org.opencontainers.image.version="${KUIK_VERSION}" \
      org.opencontainers.image.revision="${KUIK_BUILD_REVISION}" \
      org.opencontainers.image.created="${KUIK_BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0"
