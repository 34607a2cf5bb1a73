#!/usr/bin/env bash
# The local-TLS test makes its CA and certificates with the openssl command. Installs Debian's
# openssl when it is missing and this machine can (root with apt-get); otherwise says so.
set -euo pipefail
if command -v openssl >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "openssl not found: installing it" >&2
  apt-get update -qq && apt-get install -y -qq openssl >/dev/null
  exit 0
fi
echo "The tests need the openssl command: install it (e.g. apt-get install openssl)" >&2
exit 1
