#!/usr/bin/env bash
# The whole test suite, as the README says: installs what the tests need
# (redis-server; chromium for the browser tests) when missing, then runs
# go vet, a gofmt check and every test with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# promtool checks deploy/monitoring's alert rules; haproxy -c the compose
# balancer's configuration (the tests skip them when absent).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ "${OCCASE_SKIP_BROWSER:-}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  need+=(chromium)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# third_party/ included: its one upstream file that predates gofmt's doc
# comment rule was reformatted (third_party/miniredis/README.md).
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...
go test -race -count=1 -timeout 15m ./... "$@"
# the patched miniredis is a module of its own, which ./... leaves out
(cd third_party/miniredis && go vet ./... && go test -race -count=1 ./...)
