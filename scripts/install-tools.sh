#!/usr/bin/env bash
# Installs the external programs the integration tests run for real:
#   - anvil (Ethereum node) from the npm registry into $1/node_modules/.bin
#   - prometheus, promtool, alertmanager, amtool from Debian packages (root only)
# Under CI=true a component that cannot be installed is an error, not a skip.
set -euo pipefail
dest=${1:-.tools}
ci=${CI:-}
fail() { echo "install-tools: $*" >&2; if [ "$ci" = "true" ]; then exit 1; fi; }

mkdir -p "$dest"
if [ ! -x "$dest/node_modules/.bin/anvil" ]; then
  if command -v npm >/dev/null 2>&1; then
    (cd "$dest" && npm install --silent --no-audit --no-fund --prefix . \
        @foundry-rs/anvil@1.7.1 @foundry-rs/anvil-linux-amd64@1.7.1 >/dev/null) \
      || fail "npm install of anvil failed"
  else
    fail "npm not found: cannot install anvil"
  fi
fi
if [ -x "$dest/node_modules/.bin/anvil" ] && ! "$dest/node_modules/.bin/anvil" --version >/dev/null 2>&1; then
  fail "anvil is installed but does not run"
fi

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || fail "apt-get install ${need[*]} failed"
    # The packages start services through systemd where there is one; tests run their own.
    for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
      command -v systemctl >/dev/null 2>&1 && systemctl stop "$svc" >/dev/null 2>&1 || true
    done
  else
    fail "prometheus/alertmanager missing and not root: install ${need[*]}"
  fi
fi
exit 0
