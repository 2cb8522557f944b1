#!/usr/bin/env bash
# Wheels for the images, built on this machine so that `podman build` / `docker build`
# installs them with --no-index (no network inside the build, no compiler in the image):
#   .build/wheels/distshot  distshot from this source tree with the [all] extra, and pip
#   .build/wheels/moto      moto[server] and pip, for the S3 stand-in (deploy/images/s3)
# Dependencies are resolved again only when pyproject.toml changed (or with --refresh);
# distshot's own wheel is rebuilt every time. PYTHON names the interpreter whose pip builds
# them (a CPython 3.11, as in the image).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$root/.venv/bin/python}
refresh=false
[ "${1:-}" = --refresh ] && refresh=true
wheels=$root/.build/wheels
pip_wheel() { "$PYTHON" -m pip wheel -q --disable-pip-version-check "$@"; }

# distshot: the stamp is pyproject.toml's hash; same hash, only distshot's wheel is new.
stamp=$wheels/distshot/.pyproject.sha256
want=$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)
mkdir -p "$wheels/distshot"
rm -f "$wheels"/distshot/distshot-*.whl
if ! $refresh && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    pip_wheel --no-deps -w "$wheels/distshot" "$root"
else
    rm -f "$wheels"/distshot/*.whl
    pip_wheel -w "$wheels/distshot" "$root[all]" pip
    echo "$want" >"$stamp"
fi

# moto[server]: once, until --refresh.
if $refresh || [ ! -f "$wheels/moto/.done" ]; then
    rm -rf "$wheels/moto"
    mkdir -p "$wheels/moto"
    pip_wheel -w "$wheels/moto" 'moto[server]>=5' pip
    touch "$wheels/moto/.done"
fi
