#!/usr/bin/env bash
# Runs a command and then says how long it took, wall-clock and CPU (user and system, its
# processes together), so make test's log shows where CI's time goes; CPU time stays
# comparable on a machine that is busy with other work.
#   tools/timed.sh COMMAND [ARGS...]
set -uo pipefail
TIMEFORMAT="timed: %0R s wall, %0U s user, %0S s system: $*"
time "$@"
