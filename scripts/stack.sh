#!/usr/bin/env bash
# `make stack` / `make stack-down`: the docker-compose topology natively on
# this machine. Postgres (the embedded one under .data/, or DATABASE_URL),
# migrations, two Tessera instances, notes, and Nginx with TLS on
# https://127.0.0.1:8443. Every process started is recorded in .data/stack/
# and `down` stops exactly those.
set -eEuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.data/stack
AUTH_PORTS=(${STACK_AUTH_PORTS:-8101 8102})
NOTES_PORT=${STACK_NOTES_PORT:-8201}
HTTP_PORT=${GATEWAY_HTTP_PORT:-8080}
HTTPS_PORT=${GATEWAY_HTTPS_PORT:-8443}
ISSUER=https://127.0.0.1:$HTTPS_PORT
TESSERA=(node "$ROOT/services/auth/bin/tessera.js")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# Alive and still one of ours (a recorded PID may have been reused since).
alive () { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && ps -p "$1" -o args= | grep -qE 'dist/server\.js|nginx'; }

# Waits up to $2 seconds for URL $1 to answer 2xx, and no longer than
# process $3 (a name start_bg recorded) lives: one that exited at start
# (a bad setting, a wrong KEK) would otherwise be waited for the whole time.
wait_for () {
  local deadline=$((SECONDS + $2))
  until curl -fsk -o /dev/null --max-time 2 "$1"; do
    if [ -n "${3:-}" ] && ! alive "$(cat "$STATE/$3.pid")"; then
      echo "stack: $3 exited before $1 answered; the end of $STATE/logs/$3.log:" >&2
      tail -n 5 "$STATE/logs/$3.log" >&2
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then echo "stack: $1 did not come up; logs in $STATE/logs/ and $STATE/nginx/error.log" >&2; return 1; fi
    sleep 0.3
  done
}

# A random secret kept in .data/ (git-ignored, readable by this user only), the same on every run.
secret () {
  local file=$ROOT/.data/$1
  [ -s "$file" ] || (umask 077; node -e 'process.stdout.write(require("node:crypto").randomBytes(24).toString("base64url") + "\n")' > "$file")
  tr -d '\n' < "$file"
}

# URL $1 with its user and password replaced by $2 and $3.
url_as () {
  node -e 'const u = new URL(process.argv[1]); u.username = process.argv[2]; u.password = process.argv[3]; console.log(u.toString())' "$1" "$2" "$3"
}

start_bg () { # name, command…  (env comes from the caller)
  local name=$1; shift
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pid"
}

up () {
  for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    if alive "$(cat "$f")"; then echo "stack: already up ($(basename "$f" .pid) is running); run make stack-down first" >&2; exit 1; fi
  done
  [ -x "$NGINX" ] || { echo "stack: nginx not found (apt-get install nginx)" >&2; exit 1; }
  [ -f services/auth/dist/server.js ] && [ -f services/notes/dist/server.js ] || { echo "stack: run make build first" >&2; exit 1; }
  local port
  for port in "${AUTH_PORTS[@]}" "$NOTES_PORT" "$HTTP_PORT" "$HTTPS_PORT"; do
    if (: > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "stack: port $port is in use (make run? another stack?); free it or set STACK_AUTH_PORTS, STACK_NOTES_PORT, GATEWAY_HTTP_PORT, GATEWAY_HTTPS_PORT" >&2
      exit 1
    fi
  done
  mkdir -p "$STATE/logs"
  # As root, Nginx's workers run as nobody and read and write under $STATE/nginx (its cache, its temp files).
  if [ "$(id -u)" = 0 ] && command -v runuser >/dev/null && ! runuser -u nobody -- test -x "$STATE" 2>/dev/null; then
    echo "stack: Nginx's workers (user nobody) cannot reach $STATE: a directory above it is closed to other users (mode 0700, e.g. under /root); clone elsewhere, or chmod o+x the directories above it" >&2
    exit 1
  fi
  rm -f "$STATE"/*.pid "$STATE/postgres-started"
  # Half a stack is worse than none: on any failure, stop what was started.
  # Once: set -E hands the trap to command substitutions too, whose failure then fires it in both shells.
  trap '[ "$BASHPID" != "$$" ] || { echo "stack: failed; stopping what was started" >&2; down; }' ERR

  if [ -z "${DATABASE_URL:-}" ]; then
    local db
    db=$("${TESSERA[@]}" db start --json)
    DATABASE_URL=$(node -p 'JSON.parse(process.argv[1]).url' "$db")
    [ "$(node -p 'JSON.parse(process.argv[1]).started' "$db")" = true ] && touch "$STATE/postgres-started"
  fi
  # DATABASE_URL is an administrator's: it only creates the roles. The
  # migrations, Tessera and notes each connect as their own role.
  local owner_password app_password notes_password
  owner_password=$(secret db-owner-password)
  app_password=$(secret db-app-password)
  notes_password=$(secret db-notes-password)
  DATABASE_URL=$DATABASE_URL TESSERA_DB_OWNER_PASSWORD=$owner_password TESSERA_DB_APP_PASSWORD=$app_password \
    TESSERA_DB_NOTES_PASSWORD=$notes_password "${TESSERA[@]}" db roles
  local admin_url=$DATABASE_URL
  printf 'schema: '
  DATABASE_URL=$(url_as "$admin_url" tessera_owner "$owner_password") "${TESSERA[@]}" migrate up
  local app_url notes_url
  app_url=$(url_as "$admin_url" tessera_app "$app_password")
  notes_url=$(url_as "$admin_url" tessera_notes "$notes_password")
  # The public client the README's walkthrough logs in with, for the notes resource.
  DATABASE_URL=$(url_as "$admin_url" tessera_app "$app_password") "${TESSERA[@]}" clients show notes-web >/dev/null 2>&1 ||
    DATABASE_URL=$(url_as "$admin_url" tessera_app "$app_password") "${TESSERA[@]}" clients create notes-web --grants password,refresh_token \
      --scopes "notes:read notes:write" --resources urn:tessera:notes >/dev/null

  # The same key-encryption key `make run` uses, so both see the same keys.
  if [ -z "${TESSERA_KEK:-}" ]; then
    [ -s .data/kek ] || (umask 077; node -e 'process.stdout.write(require("node:crypto").randomBytes(32).toString("base64url") + "\n")' > .data/kek)
    TESSERA_KEK=$(tr -d '\n' < .data/kek)
  fi
  bash scripts/tls-cert.sh "$ROOT/.data/tls"

  local i=0
  for port in "${AUTH_PORTS[@]}"; do
    i=$((i + 1))
    DATABASE_URL=$app_url PORT=$port HOST=127.0.0.1 TESSERA_KEK=$TESSERA_KEK TESSERA_ISSUER=$ISSUER TESSERA_TRUST_PROXY=127.0.0.1 \
      start_bg "auth$i" node services/auth/dist/server.js
  done
  # notes takes the gateway's X-Request-Id, as Tessera does: one id in the gateway's log, notes' and the answer.
  DATABASE_URL=$notes_url PORT=$NOTES_PORT HOST=127.0.0.1 NOTES_ISSUER=$ISSUER NOTES_TRUST_PROXY=127.0.0.1 NODE_EXTRA_CA_CERTS=$ROOT/.data/tls/cert.pem \
    start_bg notes node services/notes/dist/server.js
  i=0
  for port in "${AUTH_PORTS[@]}"; do i=$((i + 1)); wait_for "http://127.0.0.1:$port/readyz" 90 "auth$i"; done
  wait_for "http://127.0.0.1:$NOTES_PORT/readyz" 30 notes

  local addrs
  addrs=$(printf '127.0.0.1:%s,' "${AUTH_PORTS[@]}")
  GATEWAY_AUTH_ADDRS=${addrs%,} GATEWAY_NOTES_ADDRS=127.0.0.1:$NOTES_PORT GATEWAY_HTTP_PORT=$HTTP_PORT GATEWAY_HTTPS_PORT=$HTTPS_PORT \
    node scripts/render-nginx.mjs "$STATE/nginx" >/dev/null
  "$NGINX" -q -t -p "$STATE/nginx" -c "$STATE/nginx/nginx.conf" -e "$STATE/nginx/error.log"
  "$NGINX" -p "$STATE/nginx" -c "$STATE/nginx/nginx.conf" -e "$STATE/nginx/error.log"
  cp "$STATE/nginx/nginx.pid" "$STATE/nginx.pid"
  wait_for "$ISSUER/.well-known/jwks.json" 30
  trap - ERR

  cat <<MSG

Tessera stack is up (logs in .data/stack/logs/, Nginx's in .data/stack/nginx/):
  gateway  $ISSUER            (http://127.0.0.1:$HTTP_PORT redirects here, refusing credentials)
  auth     $(printf 'http://127.0.0.1:%s ' "${AUTH_PORTS[@]}")
  notes    http://127.0.0.1:$NOTES_PORT
  issuer   $ISSUER

Try (the certificate is self-signed, hence -k):
  curl -sk $ISSUER/.well-known/jwks.json
  curl -sk $ISSUER/v1/users -H 'content-type: application/json' -d '{"username":"dana","password":"correct horse battery"}'
More in README.md ("Through the gateway"). Stop with: make stack-down
MSG
}

stop_pid () { # name, pid file, signal
  local pid
  pid=$(cat "$2")
  if alive "$pid"; then
    kill -"$3" "$pid"
    local deadline=$((SECONDS + 30))
    while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if alive "$pid"; then kill -KILL "$pid"; fi
    echo "stopped $1 ($pid)"
  fi
  rm -f "$2"
}

down () {
  [ -f "$STATE/nginx.pid" ] && stop_pid nginx "$STATE/nginx.pid" QUIT
  for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    stop_pid "$(basename "$f" .pid)" "$f" TERM
  done
  if [ -f "$STATE/postgres-started" ]; then
    env -u DATABASE_URL "${TESSERA[@]}" db stop
    rm -f "$STATE/postgres-started"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: stack.sh up|down" >&2; exit 2 ;;
esac
