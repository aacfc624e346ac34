#!/usr/bin/env bash
# Smoke test of `make serve`, production's web server: DEBUG off, PostgreSQL and Redis, static
# files from WhiteNoise. A missing SECRET_KEY stops it with one line; then it starts, a real
# browser signs in (.ci/browser_sign_in.py), an unknown URL and a bad Host get the portal's
# own pages (no debug page), and SIGTERM stops gunicorn with nothing left running.
#
# Its own database (dropped and created again) and Redis database: SMOKE_DB, SMOKE_REDIS_DB.
# The port is a free one unless SMOKE_PORT is given.
set -euo pipefail
cd "$(dirname "$0")/.."

db=${SMOKE_DB:-portal_serve}
port=${SMOKE_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
base="http://127.0.0.1:$port"
work=$(mktemp -d)
log="$work/serve.log"
fail() { echo "serve smoke: $*"; echo "--- make serve's output:"; cat "$log" 2>/dev/null || true; exit 1; }

# Production's environment, less one setting: the browser talks plain http to 127.0.0.1 where
# production has a TLS proxy in front, so the redirect to https is off. Cookies stay Secure
# (Chromium keeps Secure cookies from http://127.0.0.1, a trustworthy origin), and the browser
# script checks they are.
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
export REDIS_URL="redis://127.0.0.1:6379/${SMOKE_REDIS_DB:-12}"
SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')
export SECRET_KEY ALLOWED_HOSTS=127.0.0.1 SECURE_SSL_REDIRECT=false PORT=$port
export STATIC_ROOT="$work/static" PORTAL_DATA_DIR="$work/data" WEB_CONCURRENCY=2

dropdb -h 127.0.0.1 -U postgres --if-exists "$db"
createdb -h 127.0.0.1 -U postgres "$db"

# A missing variable: one clear line, no traceback.
if SECRET_KEY="" make --no-print-directory serve >"$log" 2>&1; then fail "started without SECRET_KEY"; fi
grep -q "Configuration error: SECRET_KEY: required when DEBUG is off" "$log" || fail "no clear error without SECRET_KEY"
! grep -q Traceback "$log" || fail "a traceback instead of the one-line error"

# Its own session, so that SIGTERM reaches gunicorn and we can look for leftovers by group.
setsid make --no-print-directory serve >"$log" 2>&1 &
group=$!
trap 'kill -KILL -- -"$group" 2>/dev/null || true' EXIT  # on any failure below
for _ in $(seq 1 90); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/accounts/login/" || true)" = 200 ] && break
  kill -0 "$group" 2>/dev/null || fail "make serve exited"
  sleep 0.5
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/accounts/login/")" = 200 ] || fail "no answer on $base/accounts/login/"

password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(16))')
SMOKE_PASSWORD=$password DEBUG=false .venv/bin/python manage.py shell -v 0 -c '
import os
from django.contrib.auth.models import Group, User
user = User.objects.create_user("smoke-admin", password=os.environ["SMOKE_PASSWORD"])
user.groups.add(Group.objects.get(name="Administrators"))'
.venv/bin/python .ci/browser_sign_in.py "$base" smoke-admin "$password" || fail "browser sign-in failed"

# DEBUG is off: the portal's own 404 and 400 pages, never Django's debug pages.
page="$work/page.html"
[ "$(curl -s -o "$page" -w '%{http_code}' "$base/no-such-page/")" = 404 ] || fail "unknown URL: not a 404"
grep -q "<h1>Not found</h1>" "$page" || fail "404: not the portal's page"
[ "$(curl -s -o "$page" -w '%{http_code}' -H 'Host: elsewhere.example' "$base/accounts/login/")" = 400 ] \
  || fail "a Host not in ALLOWED_HOSTS: not a 400"
grep -q "<h1>Bad request</h1>" "$page" || fail "400: not the portal's page"
! grep -qiE "traceback|DisallowedHost|URLconf|DEBUG = True" "$page" || fail "Django's debug page is shown"

kill -TERM -- -"$group"
for _ in $(seq 1 60); do kill -0 -- -"$group" 2>/dev/null || break; sleep 0.5; done
if kill -0 -- -"$group" 2>/dev/null; then
  ps -o pid,args -g "$group" || true
  kill -KILL -- -"$group" 2>/dev/null || true
  fail "gunicorn did not stop on SIGTERM"
fi
grep -q "Shutting down: Master" "$log" || fail "gunicorn did not shut down cleanly"
rm -rf "$work"
echo "serve smoke: passed (make serve on $base, DEBUG off, browser sign-in, clean stop)"
