#!/bin/sh
# Regenerate the committed Python code from proto/. One script, used by `make proto` and the
# staleness test. Usage: scripts/gen_proto.sh [OUTDIR]  (default: proto, i.e. in place)
# wire.proto holds the service (gRPC stubs too); the other files hold plugin payloads only.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/proto}
py=${PYTHON:-python3}
mkdir -p "$out"
cd "$here/proto"
"$py" -m grpc_tools.protoc -I. \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  net_gazer/v1/wire.proto
"$py" -m grpc_tools.protoc -I. --python_out="$out" --mypy_out="$out" net_gazer/v1/quality.proto
"$py" -m grpc_tools.protoc -I. --python_out="$out" --mypy_out="$out" net_gazer/v1/traceroute.proto
"$py" -m grpc_tools.protoc -I. --python_out="$out" --mypy_out="$out" net_gazer/v1/udp.proto
