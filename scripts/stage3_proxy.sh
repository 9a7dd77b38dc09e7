#!/usr/bin/env bash
# Stage 03 behind nginx (`make stage-3 PROXY=1`): gunicorn on a unix socket,
# nginx in front on $HOST:$PORT, both in the foreground of this script.
# Ctrl-C (SIGINT) or SIGTERM stops both: gunicorn gracefully (TERM), nginx
# gracefully (QUIT); the temp dir holding the socket and nginx's files goes too.
#
#   GUNICORN=.venv/bin/gunicorn bash scripts/stage3_proxy.sh     (run from anywhere)
#
# Needs nginx (Debian: apt-get install nginx-light; macOS: brew install nginx)
# and envsubst (Debian: gettext-base; macOS: brew install gettext).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAGE3="$(cd "$HERE/../03_wsgi" && pwd)"
GUNICORN="${GUNICORN:-$HERE/../.venv/bin/gunicorn}"
export HOST="${HOST:-127.0.0.1}" PORT="${PORT:-8000}"

for tool in nginx envsubst; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin"
  command -v "$tool" >/dev/null || {
    echo "stage3_proxy.sh: $tool not found (Debian: apt-get install nginx-light gettext-base)" >&2
    exit 1
  }
done

# nginx's prefix: its config, pid file and temp folders, plus gunicorn's socket.
RUNDIR="$(mktemp -d "${TMPDIR:-/tmp}/iris-proxy.XXXXXX")"
mkdir -p "$RUNDIR/tmp"
# Started as root, nginx runs its workers as `nobody`: they must reach the socket.
chmod 755 "$RUNDIR"
export NGINX_LISTEN="$HOST:$PORT" NGINX_UPSTREAM="unix:$RUNDIR/gunicorn.sock"
# shellcheck disable=SC2016 # the single quotes are the point: envsubst gets the names, not values
envsubst '${NGINX_LISTEN} ${NGINX_UPSTREAM}' <"$STAGE3/nginx.conf" >"$RUNDIR/nginx.conf"

# gunicorn's master writes its PID here. A binary upgrade (kill -USR2) replaces the master: the new one
# is the old one's child, writes PIDFILE.2, and takes PIDFILE over once the old one is gone. So this
# script follows the file, not the PID it started (a supervisor that followed only its child would
# take the server down with the old master, or leave the new one running unseen).
export PIDFILE="${PIDFILE:-$RUNDIR/gunicorn.pid}"
master() {
  local pid=""
  read -r pid <"$PIDFILE" 2>/dev/null || read -r pid <"$PIDFILE.2" 2>/dev/null || pid=$gunicorn_pid
  echo "$pid"
}
gunicorn_up() { kill -0 "$gunicorn_pid" 2>/dev/null || kill -0 "$(master)" 2>/dev/null; }

gunicorn_pid="" nginx_pid=""
stop() {
  trap - INT TERM EXIT
  [[ -n "$nginx_pid" ]] && kill -QUIT "$nginx_pid" 2>/dev/null
  [[ -n "$gunicorn_pid" ]] && kill -TERM "$(master)" "$gunicorn_pid" 2>/dev/null
  for _ in $(seq 300); do gunicorn_up || break; sleep 0.1; done  # an adopted master is not ours to `wait` for
  wait 2>/dev/null
  rm -rf "$RUNDIR"
}
trap stop INT TERM EXIT

# gunicorn exactly as `make stage-3` runs it, but bound to the socket (a
# command-line --bind overrides gunicorn.conf.py's HOST:PORT).
(cd "$STAGE3" && exec "$GUNICORN" -c gunicorn.conf.py --bind "$NGINX_UPSTREAM" "app:create_app()") &
gunicorn_pid=$!
nginx -t -q -p "$RUNDIR" -c nginx.conf -e stderr
nginx -p "$RUNDIR" -c nginx.conf -e stderr &
nginx_pid=$!
echo "nginx on http://$NGINX_LISTEN -> gunicorn on $NGINX_UPSTREAM (Ctrl-C stops both)"
# Either one exiting ends the other: never leave half a server running.
while kill -0 "$nginx_pid" 2>/dev/null && gunicorn_up; do sleep 1; done
