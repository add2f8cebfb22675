#!/bin/sh
# A per-sensor token: prints the token (give it to the sensor in a file, --token-file) and the line
# for the collector's --tokens file (the collector keeps only the SHA-256 of the token).
#
#   scripts/make-token.sh SENSOR_ID
set -eu
[ $# -eq 1 ] || { echo "usage: $0 SENSOR_ID" >&2; exit 2; }
token=$(openssl rand -hex 32)
digest=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
echo "token (sensor --token-file):  $token"
echo "line for the collector --tokens file:"
echo "$1 $digest"
