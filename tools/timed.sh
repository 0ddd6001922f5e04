#!/usr/bin/env bash
# Runs a command and then says how long it took, so make test's log shows where CI's time goes.
#   tools/timed.sh COMMAND [ARGS...]
set -uo pipefail
started=$SECONDS
"$@"
status=$?
echo "timed: $((SECONDS - started)) s, exit $status: $*" >&2
exit $status
