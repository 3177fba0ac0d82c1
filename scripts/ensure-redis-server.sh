#!/usr/bin/env bash
# The real-Redis tests start their own redis-server; install it from Debian packages when it is missing.
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing redis-server (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
else
  echo "redis-server is not on PATH; install it (e.g. apt-get install redis-server) for the real-Redis tests" >&2
fi
