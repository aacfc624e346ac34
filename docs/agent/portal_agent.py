#!/usr/bin/env python3
"""Reference session agent for Linux desktops: tells the portal who is logged on.

vCenter cannot tell the portal who is logged on to a desktop, so maintenance would rebuild a
desktop under a working user. This agent reports logons, logoffs and heartbeats to
POST /api/v1/agent/sessions with its hypervisor endpoint's agent token, and does what the
answer asks: show a message to the user, log the user off when the grace period ends.

Python 3.8+ standard library only. Configuration (first found wins):
  --url / --token options; PORTAL_AGENT_URL / PORTAL_AGENT_TOKEN environment variables;
  the file /etc/portal-agent.conf (or --config), lines `url = ...` and `token = ...`.
The desktop's name is its host name (the portal's desktop name), or --desktop.

  portal_agent.py logon  [--user NAME]   from a PAM session hook (pam_exec) or a login script
  portal_agent.py logoff [--user NAME]
  portal_agent.py heartbeat              who is logged on now (loginctl), once
  portal_agent.py run [--every 60]       heartbeat forever (a systemd service)

Exit status: 0 when the portal took the report, 1 when it refused it (the message says why),
2 when it could not be reached.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

CONFIG = "/etc/portal-agent.conf"
PATH = "/api/v1/agent/sessions"
TIMEOUT = 15


def read_config(path: str) -> dict:
    values = {}
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                key, sep, value = line.partition("=")
                if sep and not key.strip().startswith("#"):
                    values[key.strip().lower()] = value.strip()
    except FileNotFoundError:
        pass
    return values


def settings(args) -> tuple[str, str]:
    config = read_config(args.config)
    url = args.url or os.environ.get("PORTAL_AGENT_URL") or config.get("url", "")
    token = args.token or os.environ.get("PORTAL_AGENT_TOKEN") or config.get("token", "")
    if not url or not token:
        sys.exit(f"portal-agent: no portal url or token (options, environment or {args.config})")
    return url.rstrip("/"), token


def logged_on_user() -> str:
    """The user of the first graphical or remote session (loginctl), else of any session."""
    if not shutil.which("loginctl"):
        return ""
    try:
        listed = subprocess.run(
            ["loginctl", "list-sessions", "--no-legend"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    users = []
    for line in listed.splitlines():
        fields = line.split()
        # SESSION UID USER [SEAT] [TTY]; system users (uid < 1000) are not people.
        if len(fields) >= 3 and fields[1].isdigit() and int(fields[1]) >= 1000:
            users.append(fields[2])
    return users[0] if users else ""


def post(url: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        url + PATH,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
        return json.load(answer)


def report(url: str, token: str, desktop: str, event: str, user: str = "") -> dict:
    # timezone.utc, not datetime.UTC: desktops may have a Python older than 3.11.
    now = datetime.now(timezone.utc)  # noqa: UP017
    body = {"desktop": desktop, "event": event, "at": now.isoformat()}
    if user:
        body["user"] = user
    return post(url, token, body)


# -- what the portal asks -----------------------------------------------------------------


def show_message(text: str, user: str) -> None:
    """To the user's desktop (notify-send) if we can, and to every terminal (wall)."""
    if user and shutil.which("notify-send") and shutil.which("sudo") and os.geteuid() == 0:
        uid = subprocess.run(["id", "-u", user], capture_output=True, text=True).stdout.strip()
        if uid:
            subprocess.run(
                [
                    "sudo",
                    "-u",
                    user,
                    f"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{uid}/bus",
                    "notify-send",
                    "--urgency=critical",
                    "Maintenance",
                    text,
                ],
                check=False,
                timeout=10,
            )
    if shutil.which("wall"):
        subprocess.run(["wall", text], check=False, timeout=10)
    else:
        print(text, file=sys.stderr)


def log_off(user: str) -> None:
    if user and shutil.which("loginctl"):
        subprocess.run(["loginctl", "terminate-user", user], check=False, timeout=30)


def act(actions: list, user: str, wait: bool) -> None:
    """Do what the portal asked. A logoff is due in `in_seconds` (the grace period): `run`
    keeps going meanwhile (wait=False: a timer), a one-shot command waits for it."""
    for action in actions or []:
        kind = action.get("type")
        if kind == "message":
            show_message(str(action.get("text", "")), user)
        elif kind == "logoff":
            delay = max(0, int(action.get("in_seconds", 0)))
            if wait:
                time.sleep(delay)
                log_off(user)
            else:
                timer = threading.Timer(delay, log_off, args=[user])
                timer.daemon = True
                timer.start()


# -- commands -----------------------------------------------------------------------------


def once(args, event: str) -> int:
    url, token = settings(args)
    if event == "heartbeat":
        user = args.user if args.user is not None else logged_on_user()
    else:
        user = args.user or os.environ.get("PAM_USER") or getpass.getuser()
    try:
        answer = report(url, token, args.desktop, event, "" if event == "logoff" else user)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        print(f"portal-agent: {event} refused ({exc.code}): {detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"portal-agent: portal unreachable: {exc}", file=sys.stderr)
        return 2
    if args.verbose:
        print(json.dumps(answer))
    act(answer.get("actions", []), user, wait=True)
    return 0


def run(args) -> int:
    """Heartbeat every --every seconds, reporting logons and logoffs as they are seen."""
    url, token = settings(args)
    while True:
        user = logged_on_user() if args.user is None else args.user
        try:
            answer = report(url, token, args.desktop, "heartbeat", user)
            if args.verbose:
                print(json.dumps(answer), flush=True)
            act(answer.get("actions", []), user, wait=False)
        except (urllib.error.URLError, OSError) as exc:
            print(f"portal-agent: heartbeat failed: {exc}", file=sys.stderr, flush=True)
        time.sleep(args.every)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["logon", "logoff", "heartbeat", "run"])
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--desktop", default=socket.gethostname().split(".")[0].upper())
    parser.add_argument("--user", help="who (default: PAM_USER, or who is logged on)")
    parser.add_argument("--every", type=int, default=60, help="run: seconds between reports")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the answers")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args)
    return once(args, args.command)


if __name__ == "__main__":
    sys.exit(main())
