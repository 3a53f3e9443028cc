#!/usr/bin/env bash
# Runs the test suite, like `go test ./...` (extra arguments go to go test),
# and ends with the tests that skipped and what to install for them (the
# clients, S3 servers and root privileges some integration tests need;
# .ci/run installs them all, and in CI a missing one fails its test).
set -euo pipefail
cd "$(dirname "$0")"
go test -json "$@" ./... | go run ./tools/testreport
