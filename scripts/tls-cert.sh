#!/usr/bin/env bash
# A self-signed certificate for the gateway, for local use only: .data/tls/
# (git-ignored). Valid for 127.0.0.1, localhost and the compose name `nginx`.
# Kept when present; delete the directory to make a new one.
set -euo pipefail
dir="${1:-$(cd "$(dirname "$0")/.." && pwd)/.data/tls}"
if [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ]; then exit 0; fi
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -subj '/CN=tessera-gateway' \
  -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:nginx' \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
chmod 600 "$dir/key.pem"
chmod 644 "$dir/cert.pem"
