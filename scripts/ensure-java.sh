#!/usr/bin/env bash
# DynamoDB Local, the DynamoDB stand-in, needs Java 17 or newer. Installs Debian's JRE when it is
# missing and this machine can (root with apt-get); otherwise says what to install.
set -euo pipefail
version=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1 || true)
if [ -n "${version}" ] && [ "${version}" -ge 17 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Java 17 not found: installing openjdk-17-jre-headless" >&2
  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  exit 0
fi
echo "DynamoDB Local needs Java 17 or newer: install it (e.g. apt-get install openjdk-17-jre-headless)" >&2
exit 1
