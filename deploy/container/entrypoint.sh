#!/bin/bash
# The image's entry point (under tini), then `distshot ARGS`:
#  - DISTSHOT_WAIT_FOR="host:port ...": waits until each accepts TCP connections, at most
#    DISTSHOT_WAIT_TIMEOUT seconds (120) in all (a stack started at once has no worker
#    that exits because the broker was still booting);
#  - DISTSHOT_MAKE_BUCKET=NAME: creates that S3 bucket when it is missing (the storage
#    check of `worker` and `dispatch` refuses a missing bucket).
set -euo pipefail
timeout=${DISTSHOT_WAIT_TIMEOUT:-120}
deadline=$((SECONDS + timeout))
for target in ${DISTSHOT_WAIT_FOR:-}; do
    host=${target%:*}
    port=${target##*:}
    until (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "distshot-entrypoint: $target did not answer within $timeout s" >&2
            exit 2
        fi
        sleep 1
    done
done
if [ -n "${DISTSHOT_MAKE_BUCKET:-}" ]; then
    DISTSHOT_WAIT_TIMEOUT=$((deadline - SECONDS > 1 ? deadline - SECONDS : 1)) \
        distshot-make-bucket "$DISTSHOT_MAKE_BUCKET" >/dev/null
fi
exec distshot "$@"
