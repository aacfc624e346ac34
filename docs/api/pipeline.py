#!/usr/bin/env python3
"""Image pipeline: after a new golden image snapshot is built (Packer, CI), register it and
recompose a pool onto it through the portal's automation API.

    register version -> dry run (the plan, printed) -> plan -> approve -> poll until it ends

Exit status: 0 when every desktop was recomposed; 1 when the operation ended otherwise (the
failed desktops are printed); 2 when the portal refused a request (its problem is printed).

Python 3 standard library only. Settings from the environment:
    PORTAL_URL     e.g. https://portal.example.com
    PORTAL_TOKEN   a personal API token (Preferences > API tokens), lcp_...
    PIPELINE_RUN   optional: an id of this run (the CI build number); a re-run with the same
                   id resumes instead of starting twice (it is part of each Idempotency-Key)

    python3 docs/api/pipeline.py --image 3 --snapshot 2026-12-07 --pool 5 \\
        --logoff force --grace 600 --message "Maintenance in 10 minutes" --set-default
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

ACTIVE = {"draft", "scheduled", "queued", "running", "paused", "cancelling"}
# Answers worth retrying (the same Idempotency-Key makes a retry safe).
TRANSIENT = {429, 502, 503, 504}


class Refused(Exception):
    """The portal answered a problem (RFC 9457) that a retry will not fix."""


class Api:
    def __init__(self, url: str, token: str, run: str, retries: int = 5):
        self.url, self.token, self.run, self.retries = url.rstrip("/"), token, run, retries

    def call(self, method: str, path: str, body=None, key: str = ""):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if key:
            headers["Idempotency-Key"] = f"{self.run}-{key}"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                self.url + path, data=data, headers=headers, method=method
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                problem = _problem(exc)
                if exc.code not in TRANSIENT or attempt == self.retries:
                    raise Refused(f"{method} {path}: {exc.code} {_describe(problem)}") from None
                wait = float(exc.headers.get("Retry-After") or 2**attempt)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self.retries:
                    raise Refused(f"{method} {path}: {exc}") from None
                wait = 2**attempt
            print(f"  ... retrying in {wait:.0f} s", file=sys.stderr)
            time.sleep(wait)
        raise AssertionError("unreachable")

    def pages(self, path: str):
        """Every row of a list, following its cursor pages ("next" is a whole URL)."""
        while path:
            page = self.call("GET", path)
            yield from page["results"]
            following = urllib.parse.urlsplit(page["next"] or "")
            path = following.path and f"{following.path}?{following.query}"


def _problem(exc: urllib.error.HTTPError) -> dict:
    try:
        return json.loads(exc.read())
    except ValueError:
        return {}


def _describe(problem: dict) -> str:
    text = problem.get("detail") or problem.get("title") or ""
    for field, messages in (problem.get("errors") or {}).items():
        text += f"\n    {field}: {' '.join(messages)}"
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=int, required=True, help="base image id")
    parser.add_argument("--snapshot", required=True, help="the new snapshot of its parent VM")
    parser.add_argument("--pool", type=int, required=True, help="pool id to recompose")
    parser.add_argument("--logoff", choices=["wait", "force"], default="wait")
    parser.add_argument("--grace", type=int, default=300, help="seconds before a forced logoff")
    parser.add_argument("--message", default="", help="warning shown to logged-on users")
    parser.add_argument("--stop-on-error", action="store_true")
    parser.add_argument("--set-default", action="store_true", help="new desktops use it too")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between polls")
    args = parser.parse_args(argv)

    url, token = os.environ.get("PORTAL_URL"), os.environ.get("PORTAL_TOKEN")
    if not url or not token:
        print("Set PORTAL_URL and PORTAL_TOKEN.", file=sys.stderr)
        return 2
    api = Api(url, token, os.environ.get("PIPELINE_RUN") or uuid.uuid4().hex)
    try:
        return run(api, args)
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2


def run(api: Api, args) -> int:
    version = api.call(
        "POST", f"/api/v1/images/{args.image}/versions/", {"snapshot": args.snapshot}, "register"
    )
    print(
        f"registered {version['image_name']} @ {version['snapshot']} (version {version['id']}: "
        f"disk {version['disk_mb']} MiB, replica {version['used_mb']} MiB)"
    )

    request = {
        "kind": "recompose",
        "options": {"image_version": version["id"], "set_default": args.set_default},
        "logoff_policy": args.logoff,
        "grace_seconds": args.grace,
        "stop_on_error": args.stop_on_error,
    }
    if args.message:
        request["warning_message"] = args.message
    operations = f"/api/v1/pools/{args.pool}/operations/"
    preview = api.call("POST", operations, {**request, "dry_run": True})
    print(f"dry run: {len(preview['desktops'])} desktops to recompose")
    for busy in preview["busy"]:
        print(f"  skipped, busy: {busy['name']} (operation #{busy['operation']})")
    if not preview["desktops"]:
        print("nothing to recompose")
        return 1

    plan = api.call("POST", operations, request, "plan")
    print(f"plan: operation #{plan['id']} ({plan['status']})")
    operation = api.call("POST", f"/api/v1/operations/{plan['id']}/approve/", {}, "approve")
    print(f"approved: operation #{operation['id']} {operation['status']}")

    seen = None
    while operation["status"] in ACTIVE:
        time.sleep(args.poll)
        operation = api.call("GET", f"/api/v1/operations/{operation['id']}/")
        p = operation["progress"]
        line = (
            f"{operation['status']}: {p['percent']}% ({p['succeeded']} succeeded, "
            f"{p['failed']} failed, {p['running'] + p['dispatched']} running, "
            f"{p['waiting']} waiting, "
            f"{p['pending']} pending of {p['total']})"
        )
        if line != seen:
            print(line, flush=True)
            seen = line

    if operation["status"] == "succeeded":
        print(f"operation #{operation['id']} succeeded")
        return 0
    print(f"operation #{operation['id']} ended {operation['status']}", file=sys.stderr)
    if operation.get("error"):
        print(f"  {operation['error']}", file=sys.stderr)
    for status in ("failed", "halted"):
        for task in api.pages(f"/api/v1/operations/{operation['id']}/desktops/?status={status}"):
            print(f"  {task['desktop_name']}: {task['status']}: {task['error']}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
