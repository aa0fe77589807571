#!/usr/bin/env bash
# The browser test (tests/deploy/test_ui_page.py) drives Debian's headless Chromium. `make test` calls this:
# on CI (CI=true) or with ZOHO_SYNC_INSTALL_BROWSER=1 it installs Chromium when missing; elsewhere it only
# says how, and the browser test skips with that reason (on CI it must run).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "${CI:-}" != "true" ] && [ "${ZOHO_SYNC_INSTALL_BROWSER:-}" != "1" ]; then
  echo "note: chromium is not installed; the browser test will skip (install: apt-get install chromium," \
       "or ZOHO_SYNC_INSTALL_BROWSER=1 make test as root)" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing and cannot be installed here (needs root and apt-get): install Debian's chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends chromium >/dev/null \
  || { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null; }
chromium --version
