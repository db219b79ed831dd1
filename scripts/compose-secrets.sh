#!/usr/bin/env bash
# Makes the Docker secrets docker-compose.yml reads, once: a Postgres superuser
# password and the DATABASE_URL that uses it (only `tessera db roles` connects
# so), a password and a DATABASE_URL for each least-privilege role
# (docs/operators.md, "Database roles"), and a KEK. Existing files are kept (a new KEK
# would orphan the signing keys; a new password would not match the database).
# The directory is private to you; the files are world-readable inside it so
# the containers' users can read their bind-mounted copies.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.data/secrets
mkdir -p "$DIR"
chmod 700 "$DIR"
random () { node -e 'process.stdout.write(require("node:crypto").randomBytes(32).toString("base64url"))'; }
make_secret () { # file, content
  [ -s "$DIR/$1" ] && { echo "kept $DIR/$1"; return; }
  printf '%s\n' "$2" > "$DIR/$1"
  chmod 644 "$DIR/$1"
  echo "made $DIR/$1"
}
make_secret postgres_password "$(random)"
make_secret database_url "postgres://tessera:$(head -n1 "$DIR/postgres_password")@postgres:5432/tessera"
for role in owner app notes; do
  make_secret "db_${role}_password" "$(random)"
  make_secret "database_url_${role}" "postgres://tessera_${role}:$(head -n1 "$DIR/db_${role}_password")@postgres:5432/tessera"
done
make_secret tessera_kek "$(random)"
