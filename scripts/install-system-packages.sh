#!/usr/bin/env bash
# Installs the Debian packages the tests, benchmarks and demo run for real:
# redis-server, docker-registry (distribution v2), skopeo (benchmark baseline) and prometheus
# (the server and promtool, for the chart's alerts and dashboard tests).
# With --docker (make install-docker, which make test runs): docker.io (dockerd, containerd,
# runc, client), mmdebstrap and docker-compose (1.29), for the image and compose tests; large,
# so only the targets that build images ask for them. With --bench (make bench): wrk.
# As root: apt-get installs what is missing. Otherwise: says what to run.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

declare -A binary_of=(
  [redis-server]=redis-server
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [prometheus]=promtool
)
services=(docker-registry redis-server prometheus)
if [ "${1:-}" = "--docker" ]; then
  binary_of=(
    [docker.io]=dockerd
    [mmdebstrap]=mmdebstrap
    [docker-compose]=docker-compose
  )
  services=(docker containerd)
elif [ "${1:-}" = "--bench" ]; then
  binary_of=([wrk]=wrk)  # the webhook benchmark's load generator
  services=()
fi
missing=()
for pkg in "${!binary_of[@]}"; do
  command -v "${binary_of[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "kuik: missing Debian packages: ${missing[*]}" >&2
  echo "kuik: install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "kuik: installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start a registry, a redis, a prometheus or a system dockerd (bridge, iptables)
# of their own; tests start their own on private ports and sockets.
for svc in "${services[@]+"${services[@]}"}"; do
  (command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1) || true
done
