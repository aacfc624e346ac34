"""Settings of the web server of tests/portal/test_request_logs.py: the portal's, with one
more page that fails as a bug would (tests/portal/server_error_urls.py)."""

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "tests.portal.server_error_urls"
# Plain http on the loopback: the session cookie the test sends must be accepted.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
