#!/usr/bin/env bash
# The stack's images, built from this tree with podman (deploy/podman/setup.sh first):
#   localhost/distshot:latest          the Dockerfile at the root (wheels from deploy/build-wheels.sh)
#   localhost/rabbitmq-debian:3.10     deploy/images/rabbitmq: Debian's rabbitmq-server + management
#   localhost/moto-s3:latest           deploy/images/s3: moto_server, an S3 API
# --format docker keeps the HEALTHCHECKs. Layers are cached: a second run rebuilds only what
# changed (the distshot wheel when the code did).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
cd "$root"
# A fixed date inside the wheel: the same code makes the same wheel, so its layer is reused.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800} deploy/build-wheels.sh
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
build() {
    local tag=$1 file=$2 log=$logs/$3 started=$SECONDS
    if ! podman build --format docker --pull=never -f "$file" -t "$tag" . >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "build-images: building $tag from $file failed" >&2
        return 1
    fi
    echo "built $tag in $((SECONDS - started)) s ($(podman image inspect "$tag" --format '{{.Size}}') bytes)"
}
# The three at once: their apt downloads and installs overlap.
pids=()
build localhost/distshot:latest Dockerfile distshot & pids+=($!)
build localhost/rabbitmq-debian:3.10 deploy/images/rabbitmq/Dockerfile rabbitmq & pids+=($!)
build localhost/moto-s3:latest deploy/images/s3/Dockerfile s3 & pids+=($!)
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
