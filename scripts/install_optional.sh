#!/usr/bin/env bash
# Best effort, for `make test`: the second PostgreSQL (Debian's, with contrib) and Chromium for the
# browser check of the report. Tests that need them skip with a reason when they are missing.
set -u
need=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql-15 postgresql-contrib)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "optional: not root or no apt-get; missing ${need[*]} (those tests skip)"
  exit 0
fi
echo "optional: installing ${need[*]}"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
  || echo "optional: could not install ${need[*]} (those tests skip)"
exit 0
