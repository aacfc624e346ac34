"""Security: deploy checks, HTTPS settings, login lockout, the Content-Security-Policy, CSRF on
htmx posts, and escaping of whatever users type."""

import json
import os
import re
import secrets
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from audit.log import record
from audit.models import AuditEvent
from composer.models import Operation
from pools.models import Pool
from portal.security import CONTENT_SECURITY_POLICY

ROOT = Path(__file__).resolve().parents[2]
XSS = "<script>alert(1)</script>"
ESCAPED = b"&lt;script&gt;alert(1)&lt;/script&gt;"
OUR_VARIABLES = {
    "DATABASE_URL",
    "REDIS_URL",
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "TRUSTED_PROXY_SSL_HEADER",
    "CSRF_TRUSTED_ORIGINS",
    "AXES_FAILURE_LIMIT",
    "AXES_COOLOFF_MINUTES",
    # The browser tests set it in this process; check --deploy rightly refuses it.
    "DJANGO_ALLOW_ASYNC_UNSAFE",
}


def manage(tmp_path, *args, **env):
    """Run manage.py in a fresh process with exactly these settings variables."""
    clean = {k: v for k, v in os.environ.items() if k not in OUR_VARIABLES}
    clean.update({"PORTAL_DATA_DIR": str(tmp_path)}, **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def production(**extra):
    return {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "portal.example",
        **extra,
    }


SHOW_SETTINGS = """
import json
from django.conf import settings as s
print(json.dumps({name: getattr(s, name) for name in [
    "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "CSRF_TRUSTED_ORIGINS", "X_FRAME_OPTIONS", "AXES_FAILURE_LIMIT",
]} | {"cooloff_minutes": s.AXES_COOLOFF_TIME.total_seconds() / 60}))
"""


def settings_under(tmp_path, **env):
    result = manage(tmp_path, "shell", "-c", SHOW_SETTINGS, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- Deploy checks and HTTPS settings ---------------------------------------------------------


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **production())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr
    assert "?:" not in result.stdout + result.stderr  # no check message at any level


def test_check_deploy_fails_in_debug(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", DEBUG="true")
    assert result.returncode != 0
    assert "security.W018" in result.stderr  # DEBUG on


def test_production_defaults_are_https_only(tmp_path):
    values = settings_under(tmp_path, **production())
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] is None
    assert values["CSRF_TRUSTED_ORIGINS"] == []
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert (values["AXES_FAILURE_LIMIT"], values["cooloff_minutes"]) == (5, 15)


def test_debug_defaults_do_not_force_https(tmp_path):
    values = settings_under(tmp_path, DEBUG="true")
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_SECURE"] is False


def test_proxy_header_origins_and_lockout_come_from_the_environment(tmp_path):
    values = settings_under(
        tmp_path,
        **production(
            TRUSTED_PROXY_SSL_HEADER="X-Forwarded-Proto",
            CSRF_TRUSTED_ORIGINS="https://portal.example, https://*.corp.example",
            SECURE_HSTS_SECONDS="600",
            AXES_FAILURE_LIMIT="10",
            AXES_COOLOFF_MINUTES="30",
        ),
    )
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://portal.example", "https://*.corp.example"]
    assert values["SECURE_HSTS_SECONDS"] == 600
    assert (values["AXES_FAILURE_LIMIT"], values["cooloff_minutes"]) == (10, 30)
    other = settings_under(tmp_path, DEBUG="1", TRUSTED_PROXY_SSL_HEADER="X-Scheme: on")
    assert other["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_SCHEME", "on"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRUSTED_PROXY_SSL_HEADER", "X Forwarded Proto"),
        ("CSRF_TRUSTED_ORIGINS", "portal.example"),
        ("CSRF_TRUSTED_ORIGINS", "https://portal.example/login"),
        ("SECURE_SSL_REDIRECT", "sometimes"),
        ("SECURE_HSTS_SECONDS", "a year"),
        ("AXES_FAILURE_LIMIT", "0"),
        ("AXES_COOLOFF_MINUTES", "soon"),
    ],
)
def test_bad_security_value_fails_at_start_naming_the_variable(tmp_path, variable, value):
    result = manage(tmp_path, "check", DEBUG="1", **{variable: value})
    assert result.returncode != 0
    assert f"{variable}:" in result.stderr


def test_behind_a_proxy_http_redirects_to_https_and_https_gets_hsts(settings, db):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    client = Client()  # middleware reads these settings when the client's handler starts
    plain = client.get("/accounts/login/")
    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver/accounts/login/"
    secure = client.get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


# --- Login lockout ----------------------------------------------------------------------------


def sign_in(client, username, password, ip="10.0.0.1"):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip
    )


LOCKED = "Too many failed sign-in attempts. Try again in 15 minutes or ask an administrator"


def test_five_failures_lock_the_user_out_with_a_clear_message(client, users):
    for _ in range(4):
        response = sign_in(client, "ada", "wrong")
        assert response.status_code == 200
        assert b"did not match" in response.content
    fifth = sign_in(client, "ada", "wrong")
    assert fifth.status_code == 429
    assert LOCKED in fifth.content.decode()
    assert fifth["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    # Even the right password is refused now, and no session is opened.
    locked = sign_in(client, "ada", "pw-ada")
    assert locked.status_code == 429
    assert LOCKED in locked.content.decode()
    assert client.get(reverse("dashboard")).status_code == 302


def test_lockout_is_per_user_name_and_address(client, users):
    for _ in range(5):
        sign_in(client, "ada", "wrong", ip="10.0.0.1")
    assert sign_in(client, "ada", "pw-ada", ip="10.0.0.1").status_code == 429
    # The same address may still sign in as someone else, and ada from elsewhere.
    assert sign_in(client, "hal", "pw-hal", ip="10.0.0.1").status_code == 302
    client.logout()
    assert sign_in(client, "ada", "pw-ada", ip="10.0.0.2").status_code == 302


def test_a_success_resets_the_count(client, users):
    for _ in range(4):
        sign_in(client, "ada", "wrong")
    assert sign_in(client, "ada", "pw-ada").status_code == 302
    client.logout()
    for _ in range(4):
        assert sign_in(client, "ada", "wrong").status_code == 200
    assert sign_in(client, "ada", "pw-ada").status_code == 302


def test_lockout_ends_after_the_cool_off(client, users):
    for _ in range(5):
        sign_in(client, "ada", "wrong")
    assert sign_in(client, "ada", "pw-ada").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert sign_in(client, "ada", "pw-ada").status_code == 302


def test_an_administrator_can_unlock_the_account(client, users):
    for _ in range(5):
        sign_in(client, "ada", "wrong")
    call_command("axes_reset_username", "ada")
    assert sign_in(client, "ada", "pw-ada").status_code == 302


def test_failure_limit_and_message_follow_the_settings(client, users, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    assert sign_in(client, "ada", "wrong").status_code == 200
    second = sign_in(client, "ada", "wrong")
    assert second.status_code == 429
    assert "Try again in 1 minute or ask" in second.content.decode()


def test_failed_sign_ins_and_the_lockout_are_audited(client, users):
    for _ in range(5):
        sign_in(client, "ada", "wrong")
    sign_in(client, "nobody", "guess")
    events = list(AuditEvent.objects.order_by("id"))
    assert [(e.actor_name, e.role, e.action, e.outcome) for e in events] == [
        ("anonymous", "anonymous", "login", "denied")
    ] * 6
    assert [e.target_name for e in events] == ["ada"] * 5 + ["nobody"]
    assert events[0].target_id == str(users["admin"].pk)
    assert events[0].message == "Wrong user name or password."
    assert events[0].ip == "10.0.0.1"
    assert events[4].message.startswith("Too many failed sign-in attempts.")
    assert events[4].parameters == {"locked_out": True}
    assert (events[5].target_type, events[5].target_id) == ("user", "")


def test_force_login_still_works_with_the_axes_backend_first(client, users):
    client.force_login(users["admin"])
    assert client.get(reverse("dashboard")).status_code == 200


# --- Content-Security-Policy ------------------------------------------------------------------


def test_policy_allows_only_our_own_files():
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'; "
        "object-src 'none'"
    )


def test_every_response_carries_the_policy(client, users):
    assert client.get(reverse("login"))["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    client.force_login(users["admin"])
    page = client.get(reverse("dashboard"))
    assert page["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert page["X-Frame-Options"] == "DENY"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["Referrer-Policy"] == "same-origin"
    assert client.get("/no/such/page/")["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_htmx_is_configured_for_the_policy(client, db):
    page = client.get(reverse("login")).content.decode()
    config = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", page)
    assert config, "htmx-config meta tag missing"
    assert json.loads(config.group(1)) == {
        "includeIndicatorStyles": False,
        "allowEval": False,
        "allowScriptTags": False,
    }
    # The meta tag must come before htmx itself, which reads it when the page is ready.
    assert page.index('name="htmx-config"') < page.index("htmx-2")


class InlineCode(HTMLParser):
    """Collects what a strict style-src/script-src would block in an HTML page."""

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and not attrs.get("src") and attrs.get("type") != "application/json":
            self.found.append(f"inline <script> at line {self.getpos()[0]}")
        if tag == "style":
            self.found.append(f"<style> at line {self.getpos()[0]}")
        for name, value in attrs.items():
            if name == "style" or name.startswith("on") or name.startswith("hx-on"):
                self.found.append(f'{name}="{value}" on <{tag}> at line {self.getpos()[0]}')
            if name in {"href", "src", "action"} and (value or "").lower().startswith(
                "javascript:"
            ):
                self.found.append(f"javascript: URL on <{tag}> at line {self.getpos()[0]}")

    handle_startendtag = handle_starttag


def inline_code(content: bytes) -> list[str]:
    parser = InlineCode()
    parser.feed(content.decode())
    return parser.found


@pytest.fixture
def pool(client, users, lab, run_jobs):
    """A provisioned pool of 3 desktops, made through the form."""
    client.force_login(users["admin"])
    response = client.post(
        reverse("pools:create"),
        {
            "name": "Lab",
            "naming_pattern": "LAB-{n}",
            "size": 3,
            "image_version": lab.v1.pk,
            "datastores": [lab.ds["ds-a"].pk],
            "overcommit": 4,
            "power_policy": "off",
            "persistent_disk_gb": 0,
            "max_concurrent_provisioning": 8,
        },
    )
    assert response.status_code == 302
    run_jobs()
    client.logout()
    return Pool.objects.get(name="Lab")


def our_pages(pool) -> list[str]:
    operation = Operation.objects.get(pool=pool)
    desktop = pool.desktops.order_by("name").first()
    urls = [
        reverse("dashboard"),
        reverse("pools:list"),
        reverse("pools:create"),
        reverse("pools:detail", args=[pool.pk]),
        reverse("pools:pool_datastores", args=[pool.pk]),
        reverse("pools:operate", args=[pool.pk, "refresh"]),
        reverse("pools:desktop", args=[desktop.pk]),
        reverse("pools:datastores"),
        reverse("composer:operations"),
        reverse("composer:operation", args=[operation.pk]),
        reverse("audit"),
    ]
    # Pages other engineers are adding; scanned once they exist.
    for name, args, query in [
        ("pools:images", [], ""),
        ("helpdesk", [], ""),
        ("helpdesk", [], f"?q={desktop.name}"),
        ("helpdesk_confirm", [desktop.pk, "refresh"], ""),
    ]:
        try:
            urls.append(reverse(name, args=args) + query)
        except NoReverseMatch:
            pass
    return urls


@pytest.mark.django_db(transaction=True)
def test_no_page_has_inline_script_or_style(client, users, pool):
    found = {}
    login = client.get(reverse("login"))
    found[reverse("login")] = inline_code(login.content)
    client.force_login(users["admin"])
    for url in our_pages(pool):
        response = client.get(url)
        assert response.status_code == 200, url
        found[url] = inline_code(response.content)
        fragment = client.get(url, headers={"HX-Request": "true"})
        assert fragment.status_code == 200, url + " (htmx)"
        found[url + " (htmx)"] = inline_code(fragment.content)
    assert {url: problems for url, problems in found.items() if problems} == {}


@pytest.mark.django_db(transaction=True)
def test_admin_works_under_the_strict_policy(client, users):
    users["admin"].is_staff = users["admin"].is_superuser = True
    users["admin"].save()
    client.force_login(users["admin"])
    for url in [
        "/admin/",
        "/admin/auth/user/",
        f"/admin/auth/user/{users['admin'].pk}/change/",
        "/admin/auth/group/add/",
        "/admin/audit/auditevent/",
        "/admin/axes/accessattempt/",
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
        assert inline_code(response.content) == [], url


@pytest.mark.django_db(transaction=True)
def test_only_django_rq_pages_may_use_inline_code(client, users, redis_conn):
    users["admin"].is_staff = users["admin"].is_superuser = True
    users["admin"].save()
    client.force_login(users["admin"])
    response = client.get(reverse("django_rq:home"))
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "script-src 'self' 'unsafe-inline'" in policy
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy


def test_templates_and_code_never_turn_escaping_off():
    offenders = []
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        for pattern in ("|safe", "{% autoescape off", "|safeseq"):
            if pattern in text:
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    for app in ("portal", "pools", "composer"):
        for path in (ROOT / app).rglob("*.py"):
            text = path.read_text()
            for pattern in ("mark_safe(", "SafeString(", "| safe", "autoescape"):
                if pattern in text:
                    offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert offenders == []


# --- CSRF on htmx posts -----------------------------------------------------------------------


def csrf_token_from_hx_headers(content: bytes) -> str:
    match = re.search(rb"hx-headers='(\{[^']*\})'", content)
    assert match, "body has no hx-headers"
    return json.loads(match.group(1))["x-csrftoken"]


@pytest.mark.django_db(transaction=True)
def test_htmx_posts_need_the_csrf_header_from_the_page(users, pool):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    operation = Operation.objects.get(pool=pool)
    cancel = reverse("composer:cancel", args=[operation.pk])
    htmx = {"HX-Request": "true"}

    assert client.post(cancel, headers=htmx).status_code == 403
    assert client.post(cancel, headers={**htmx, "X-CSRFToken": "forged" * 6}).status_code == 403

    token = csrf_token_from_hx_headers(client.get(reverse("dashboard")).content)
    response = client.post(cancel, headers={**htmx, "X-CSRFToken": token})
    assert response.status_code != 403

    logout = reverse("logout")
    assert client.post(logout).status_code == 403
    assert client.get(reverse("dashboard")).status_code == 200  # still signed in
    assert client.post(logout, headers={"X-CSRFToken": token}).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


def test_sign_in_needs_the_csrf_token(users):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "ada", "password": "pw-ada"})
    assert response.status_code == 403


# --- Escaping of user input -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_user_input_is_escaped_on_every_page(client, users, pool):
    Pool.objects.filter(pk=pool.pk).update(name=XSS[:64], description=XSS)
    desktop = pool.desktops.order_by("name").first()
    pool.desktops.filter(pk=desktop.pk).update(assigned_user=XSS, session_user=XSS, reason=XSS)
    pool.refresh_from_db()
    record(actor=users["admin"], action=XSS, outcome="denied", target=pool, message=XSS)
    sign_in(client, XSS, "guess")  # lands in the audit log as the attempted user name

    client.force_login(users["admin"])
    shown = []
    for url in our_pages(pool):
        response = client.get(url, {"q": XSS, "user": XSS})
        assert response.status_code == 200, url
        assert XSS.encode() not in response.content, url
        if ESCAPED in response.content:
            shown.append(url)
    # The name, the user and the audit text do reach these pages, escaped.
    for url in (
        reverse("pools:list"),
        reverse("pools:detail", args=[pool.pk]),
        reverse("pools:desktop", args=[desktop.pk]),
        reverse("audit"),
    ):
        assert url in shown, url


# --- In a real browser ------------------------------------------------------------------------

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs {CHROMIUM}")
@pytest.mark.django_db(transaction=True)
def test_browser_reports_no_policy_violation_and_htmx_still_polls(
    client, users, lab, live_server, monkeypatch
):
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop
    client.force_login(users["admin"])
    client.post(
        reverse("pools:create"),
        {
            "name": "Live",
            "naming_pattern": "LIVE-{n}",
            "size": 2,
            "image_version": lab.v1.pk,
            "datastores": [lab.ds["ds-a"].pk],
            "overcommit": 4,
            "power_policy": "off",
            "persistent_disk_gb": 0,
            "max_concurrent_provisioning": 8,
        },
    )
    pool = Pool.objects.get(name="Live")  # its operation stays queued: the page keeps polling
    session = client.cookies["sessionid"].value

    urls = [reverse("dashboard"), *our_pages(pool)[1:]]
    page_url = reverse("pools:detail", args=[pool.pk])
    poll_url = reverse("pools:live", args=[pool.pk])  # the page's live part polls there

    def browse():
        violations = []
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
            page = context.new_page()
            page.on(
                "console",
                lambda message: (
                    violations.append(f"{page.url}: {message.text}")
                    if "Content Security Policy" in message.text
                    else None
                ),
            )
            try:
                for url in urls:
                    page.goto(live_server.url + url)
                    page.wait_for_load_state("load")
                page.goto(live_server.url + page_url)
                with page.expect_request(
                    lambda request: request.headers.get("hx-request") == "true", timeout=15_000
                ) as poll:
                    pass
                polled = poll.value.url
                page.wait_for_timeout(500)
            finally:
                page.close()
                context.close()
                browser.close()
        return violations, polled

    # Its own thread: the browser tests in tests/e2e keep a sync Playwright (and its event
    # loop) open in this one for the whole session, and a second one cannot start beside it.
    with ThreadPoolExecutor(max_workers=1) as executor:
        violations, polled = executor.submit(browse).result()
    assert urlsplit(polled).path == poll_url
    assert violations == [], "\n".join(violations)


@pytest.mark.django_db
def test_only_the_api_reference_may_style_inline_and_no_page_may_script_inline(client):
    # Swagger UI styles its widgets inline; its scripts are static files like ours.
    docs = client.get("/api/docs/")["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in docs and "script-src 'self';" in docs
    assert client.get("/api/schema/")["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
