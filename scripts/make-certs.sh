#!/bin/sh
# A small CA for net-gazer: a collector certificate and one client certificate per sensor.
#
#   scripts/make-certs.sh OUTDIR [SENSOR_ID ...]
#
# Writes OUTDIR/ca.pem (give it to sensors as --tls-ca and to the collector as --tls-client-ca),
# OUTDIR/collector.pem + collector.key (--tls-cert/--tls-key; names from $COLLECTOR_NAMES, default
# "localhost 127.0.0.1 ::1"), and OUTDIR/sensor-ID.pem + .key per sensor (CN = the sensor id, which
# is the identity the collector enforces). Keys are ECDSA P-256; certificates last $DAYS (825) days.
# Existing files are kept: running it again only adds what is missing.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [SENSOR_ID ...]" >&2; exit 2; }
out=$1; shift
days=${DAYS:-825}
names=${COLLECTOR_NAMES:-"localhost 127.0.0.1 ::1"}
command -v openssl >/dev/null || { echo "make-certs: openssl is needed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
umask 077

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f "$out/ca.pem" ]; then
  key "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days" -subj "/CN=net-gazer CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.pem"
fi

# sign NAME CN SAN EKU
sign() {
  [ -f "$out/$1.pem" ] && return 0
  key "$out/$1.key"
  openssl req -new -key "$out/$1.key" -subj "/CN=$2" -out "$out/$1.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s' \
    "$4" "$3" > "$out/$1.ext"
  openssl x509 -req -in "$out/$1.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$out/$1.ext" -out "$out/$1.pem" 2>/dev/null
  rm -f "$out/$1.csr" "$out/$1.ext"
}

san=""
for n in $names; do
  case $n in
    *:*|[0-9]*.[0-9]*.[0-9]*.[0-9]*) san="$san,IP:$n" ;;
    *) san="$san,DNS:$n" ;;
  esac
done
sign collector "${names%% *}" "subjectAltName=${san#,}" serverAuth
for id in "$@"; do
  case $id in
    *[!A-Za-z0-9._-]*|'') echo "make-certs: sensor id '$id' may hold letters, digits, '.', '_' and '-' only" >&2; exit 2 ;;
  esac
  sign "sensor-$id" "$id" "" clientAuth
done
echo "certificates in $out: ca.pem, collector.pem/.key${1:+, sensor-*.pem/.key}"
