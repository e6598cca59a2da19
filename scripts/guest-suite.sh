#!/bin/bash
# The guest half of the test suite, run inside the guest by `make vm-test` and
# scripts/test-all.sh: tap over test/guest/ (or the files given). With
# P2PDMA_TAP_OUT set, the raw TAP also goes there (a --rwdir on the host).
set -u
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- test/guest/*.test.ts
args=(--reporter=base --no-color --disable-coverage --allow-empty-coverage --timeout=300)
[ -n "${P2PDMA_TAP_OUT:-}" ] && args+=(--output-file "$P2PDMA_TAP_OUT")
exec node_modules/.bin/tap "${args[@]}" "$@"
