#!/usr/bin/env bash
# A self-signed certificate for the gateway, for local use only: .data/tls/
# (git-ignored). Valid for 127.0.0.1, localhost and the compose name `nginx`.
# Kept when present. One this script made is made again when it expires
# within 30 days or is a CA (as this script made it before: a CA its clients
# trust could sign for any host with key.pem); any other certificate (your
# own, put there) is never touched. Delete the directory to make a new one.
set -euo pipefail
dir="${1:-$(cd "$(dirname "$0")/.." && pwd)/.data/tls}"
cert="$dir/cert.pem"
if [ -s "$cert" ] && [ -s "$dir/key.pem" ]; then
  made_here=$(openssl x509 -in "$cert" -noout -subject -nameopt RFC2253 2>/dev/null || true)
  if [ "$made_here" != 'subject=CN=tessera-gateway' ]; then exit 0; fi
  if openssl x509 -in "$cert" -noout -checkend 2592000 >/dev/null 2>&1 &&
    ! openssl x509 -in "$cert" -noout -ext basicConstraints 2>/dev/null | grep -q 'CA:TRUE'; then
    exit 0
  fi
fi
mkdir -p "$dir"
# A server certificate and nothing more: CA:FALSE, so trusting it (as notes and the docs' curl do) trusts no other certificate.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -subj '/CN=tessera-gateway' \
  -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:nginx' \
  -addext 'basicConstraints=critical,CA:FALSE' \
  -addext 'keyUsage=critical,digitalSignature' \
  -addext 'extendedKeyUsage=serverAuth' \
  -keyout "$dir/key.pem.new" -out "$cert.new" 2>/dev/null
chmod 600 "$dir/key.pem.new"
chmod 644 "$cert.new"
mv "$dir/key.pem.new" "$dir/key.pem"
mv "$cert.new" "$cert"
