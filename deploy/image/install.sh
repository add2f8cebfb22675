#!/bin/sh
# Image step 3 (the runtime stage): a venv at VENV from the wheels of step 2 only (--no-index).
#   deploy/image/install.sh WHEELS VENV [PYTHON]
set -eu
wheels=${1:?usage: install.sh WHEELS VENV [PYTHON]}
venv=${2:?usage: install.sh WHEELS VENV [PYTHON]}
python=${3:-python3}
"$python" -m venv "$venv"
"$venv/bin/python" -m pip --disable-pip-version-check --no-cache-dir install --no-index \
    --find-links "$wheels" "net-gazer[collector]"
"$venv/bin/python" -m pip --disable-pip-version-check check
