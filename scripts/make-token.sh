#!/bin/sh
# A per-sensor token: prints the token (give it to the sensor in a file, --token-file) and the line
# for the collector's --tokens file (the collector keeps only the SHA-256 of the token).
#
#   scripts/make-token.sh SENSOR_ID [TOKENS_FILE]
#
# With TOKENS_FILE, the line is appended to it and the token is written next to it, to
# token-SENSOR_ID (both mode 0600), for the collector stack (docker-compose.yml) and the sensor.
set -eu
[ $# -eq 1 ] || [ $# -eq 2 ] || { echo "usage: $0 SENSOR_ID [TOKENS_FILE]" >&2; exit 2; }
token=$(openssl rand -hex 32)
digest=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
if [ $# -eq 2 ]; then
  umask 077
  mkdir -p "$(dirname "$2")"
  printf '%s\n' "$token" >"$(dirname "$2")/token-$1"
  printf '%s %s\n' "$1" "$digest" >>"$2"
  echo "make-token: $1 added to $2; its token is in $(dirname "$2")/token-$1"
  exit 0
fi
echo "token (sensor --token-file):  $token"
echo "line for the collector --tokens file:"
echo "$1 $digest"
