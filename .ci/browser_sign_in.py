"""CI's smoke test of `make serve` (.ci/serve_smoke.sh): a real browser signs in through the
login form and lands on the dashboard, with the stylesheet served hashed, compressed and
cached for long by WhiteNoise, and the session cookie as production sets it.

Usage: browser_sign_in.py BASE_URL USERNAME PASSWORD (exit code 1 and the reason on failure).
"""

import os
import re
import sys

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# A stylesheet name as collectstatic's manifest storage writes it: portal.<12 hex>.css
HASHED_STYLESHEET = re.compile(r"/static/portal/portal\.[0-9a-f]{12}\.css$")
TEN_YEARS = 10 * 365 * 24 * 3600


def sign_in(base_url: str, username: str, password: str) -> list[str]:
    """Sign in; return what is wrong (nothing when all is well)."""
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"],
        )
        page = browser.new_page()
        page.set_default_timeout(20_000)
        stylesheets = []
        page.on("response", lambda r: stylesheets.append(r) if r.url.endswith(".css") else None)

        page.goto(f"{base_url}/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        page.wait_for_load_state()
        heading = page.locator("h1").first.inner_text()
        if page.url.rstrip("/") != base_url or heading != "Dashboard":
            problems.append(f"signed in, landed on {page.url} ({heading!r}), not the dashboard")

        session = [c for c in page.context.cookies() if c["name"] == "sessionid"]
        if not session or not (session[0]["secure"] and session[0]["httpOnly"]):
            problems.append(f"session cookie not Secure and HttpOnly: {session}")

        hashed = [r for r in stylesheets if HASHED_STYLESHEET.search(r.url)]
        if not hashed:
            problems.append(f"no hashed stylesheet loaded: {[r.url for r in stylesheets]}")
        for response in hashed:
            headers = response.all_headers()
            max_age = re.search(r"max-age=(\d+)", headers.get("cache-control", ""))
            if response.status != 200 or headers.get("content-encoding") not in {"gzip", "br"}:
                problems.append(f"{response.url}: {response.status}, not compressed: {headers}")
            if not max_age or int(max_age.group(1)) < TEN_YEARS:
                problems.append(f"{response.url}: no long Cache-Control: {headers}")
        browser.close()
    return problems


if __name__ == "__main__":
    problems = sign_in(*sys.argv[1:4])
    for problem in problems:
        print(f"browser_sign_in: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("browser_sign_in: signed in over make serve and reached the dashboard")
