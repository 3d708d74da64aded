# The servers kuik works with, for docker-compose.yaml: redis-server and docker-registry
# (distribution 2.8, the same code as the registry:2 image) from Debian's own packages.
# Built locally from any Debian bookworm base, so the compose stack needs no image registry,
# only a Debian mirror (like the kuik image); `--build-arg BASE_IMAGE=localhost/debian-base`
# uses a local mmdebstrap base as the tests do.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server docker-registry \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
# Debian's registry config turns on htpasswd auth; this one serves anonymously, deletes allowed
# (kuik's mirror cleanup), like `docker run registry:2`. REGISTRY_HTTP_ADDR sets the address.
COPY registry.yml /etc/docker/registry/config.yml
