#!/bin/sh
# The Debian packages the tests run, checked before `npm test` (its pretest) and by .ci/run.
# The tests use the real commands of the Magistrala docs: curl, mosquitto_pub/mosquitto_sub, and make + openssl
# through certs/Makefile; the cluster tests start real nats-server, PostgreSQL, Redis and HAProxy. Missing ones are installed when this runs as root with apt-get; otherwise it stops at once
# with the line to run: a test suite that skips what it cannot run would pass without testing.
# Usage: scripts/ensure-packages.sh [more packages...]   (.ci/run adds what `npm ci` needs to build native addons)
set -eu

# One word per package: add the next one here (CI and `npm test` both read this line).
kTestPackages='curl mosquitto-clients openssl make nats-server postgresql redis-server haproxy'

if ! command -v dpkg-query >/dev/null 2>&1; then
  # Not Debian: these names mean nothing to this system's package manager, so say what to look for, and go on.
  echo "ensure-packages: not a Debian system; the tests need the equivalents of: $kTestPackages $*" >&2
  exit 0
fi

missing=''
for p in $kTestPackages "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qx 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-packages: installing$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # $missing unquoted on purpose: one argument per package.
  apt-get install -y -qq --no-install-recommends $missing >&2
  exit 0
fi

echo "ensure-packages: the tests need Debian packages that are not installed:$missing" >&2
echo "Install them (as root), then run the tests again:" >&2
echo "  apt-get update && apt-get install -y --no-install-recommends$missing" >&2
exit 1
