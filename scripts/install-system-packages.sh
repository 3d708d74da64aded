#!/usr/bin/env bash
# Installs the Debian packages the tests, benchmarks and demo run for real:
# redis-server, docker-registry (distribution v2) and skopeo (benchmark baseline).
# As root: apt-get installs what is missing. Otherwise: says what to run.
set -euo pipefail

declare -A binary_of=(
  [redis-server]=redis-server
  [docker-registry]=docker-registry
  [skopeo]=skopeo
)
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
# The package starts a registry and a redis on their default ports; tests use their own.
for svc in docker-registry redis-server; do
  (command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1) || true
done
