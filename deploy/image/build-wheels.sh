#!/bin/sh
# Image step 2 (stage "wheels"): net-gazer with the collector's dependencies, as wheels.
#   deploy/image/build-wheels.sh SRC OUT [PYTHON]
# Compiles what has no wheel (pypcap, against libpcap-dev), so the runtime stage needs no
# compiler. OUT then holds everything `install.sh` installs, and nothing is fetched after.
set -eu
src=${1:?usage: build-wheels.sh SRC OUT [PYTHON]}
out=${2:?usage: build-wheels.sh SRC OUT [PYTHON]}
python=${3:-python3}
mkdir -p "$out"
"$python" -m pip --disable-pip-version-check wheel --wheel-dir "$out" \
    "$src[collector]"
