"""Security glue: the Content-Security-Policy header, the lockout page, failed sign-ins in
the audit log, and why a directory sign-in failed (portal/directory.py marks the request).

The policy is one fixed string, so a small middleware does it; django-csp would add a
dependency and a settings schema for nonces and per-view policies the portal does not need
(every script and stylesheet is a static file, and htmx is told not to inject its own style;
see the htmx-config meta tag in base.html). Django 6.0's built-in SECURE_CSP can replace it.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.dispatch import receiver
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from audit.log import Outcome, record

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
    "base-uri": "'self'",
    "object-src": "'none'",
}
CONTENT_SECURITY_POLICY = "; ".join(f"{name} {value}" for name, value in POLICY.items())

# django-rq's queue pages (under /admin/rq/, staff only) carry small inline <script> and
# <style> blocks of their own; only they get 'unsafe-inline'. Django's admin itself needs
# nothing more than the strict policy.
INLINE_ALLOWED = {
    **POLICY,
    "script-src": "'self' 'unsafe-inline'",
    "style-src": "'self' 'unsafe-inline'",
}
CONTENT_SECURITY_POLICY_INLINE = "; ".join(
    f"{name} {value}" for name, value in INLINE_ALLOWED.items()
)
INLINE_ALLOWED_APPS = {"django_rq"}
# The API's reference page (Swagger UI, from drf-spectacular-sidecar's static files) carries
# one small inline <style> block and styles its widgets inline; its scripts are all files.
STYLE_ALLOWED = {**POLICY, "style-src": "'self' 'unsafe-inline'"}
CONTENT_SECURITY_POLICY_STYLE = "; ".join(
    f"{name} {value}" for name, value in STYLE_ALLOWED.items()
)
STYLE_ALLOWED_VIEWS = {"api:docs"}


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and INLINE_ALLOWED_APPS.intersection(match.app_names):
            policy = CONTENT_SECURITY_POLICY_INLINE
        elif match is not None and match.view_name in STYLE_ALLOWED_VIEWS:
            policy = CONTENT_SECURITY_POLICY_STYLE
        else:
            policy = CONTENT_SECURITY_POLICY
        response.headers.setdefault("Content-Security-Policy", policy)
        return response


# Why a directory sign-in failed, when it was not the password: code -> (what the sign-in
# page says, what the audit log says). Set on the request by portal/directory.py.
DIRECTORY_UNREACHABLE = "directory_unreachable"
NOT_IN_A_ROLE_GROUP = "not_in_a_role_group"
SIGN_IN_PROBLEMS = {
    DIRECTORY_UNREACHABLE: (
        "The directory could not be reached, so directory accounts cannot sign in right now; "
        "local accounts still work.",
        "The directory could not be reached.",
    ),
    NOT_IN_A_ROLE_GROUP: (
        "Your directory account is in none of the portal's groups, so it cannot sign in. "
        "Ask an administrator to add it to one.",
        "The directory account is in none of the portal's role groups.",
    ),
}


def mark_sign_in_problem(request, code: str) -> None:
    if request is not None:
        request.sign_in_problem = code


def sign_in_problem(request) -> tuple[str, str] | None:
    """(page message, audit message) when a directory sign-in failed for a reason the user
    should be told; None for a wrong user name or password."""
    return SIGN_IN_PROBLEMS.get(getattr(request, "sign_in_problem", None))


class PortalAuthenticationForm(AuthenticationForm):
    """The sign-in form, refusing a name longer than any account can have before it reaches
    the authentication backends (whose records have room for 255 characters), and auditing
    that refusal like any failed sign-in, without saying why (no hint for a guesser).

    When the directory could not be reached, or accepted the password of an account in none
    of our role groups, `problem` says so (the sign-in page shows it instead of "did not
    match"): neither tells a guesser anything about a password."""

    problem = ""

    def clean(self):
        try:
            return self._clean()
        except ValidationError:
            problem = sign_in_problem(self.request)
            if problem:
                self.problem = problem[0]
            raise

    def _clean(self):
        username = self.cleaned_data.get("username") or ""
        User = get_user_model()
        longest = User._meta.get_field(User.USERNAME_FIELD).max_length
        if len(username) > longest:
            shown = username[:longest] + "…"
            record(
                actor=None,
                action="login",
                outcome=Outcome.DENIED,
                target=User(**{User.USERNAME_FIELD: shown}),
                message=f"Wrong user name or password (a name of {len(username)} characters).",
                parameters={"locked_out": False},
                request=self.request,
            )
            raise self.get_invalid_login_error()
        return super().clean()


def lockout_message() -> str:
    minutes = max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return (
        f"Too many failed sign-in attempts. Try again in {minutes} {unit} "
        "or ask an administrator to unlock the account."
    )


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the sign-in page again, saying why, with status 429."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    context = {
        "form": PortalAuthenticationForm(request, initial={"username": username}),
        "locked_out": lockout_message(),
        "next": next_url,
    }
    return render(request, "registration/login.html", context, status=429)


# Connected when this module is imported, which the middleware above guarantees for every
# process that serves requests. django-axes connects its own receiver at start-up, so it has
# already counted this failure (and flagged a lockout) when this one runs.
@receiver(user_login_failed, dispatch_uid="portal.security.audit_failed_sign_in")
def audit_failed_sign_in(sender, credentials, request=None, **kwargs):
    username = str((credentials or {}).get("username") or "")[:150]
    User = get_user_model()
    # The real user when the name exists, so the event links to it; otherwise an unsaved
    # stand-in, so the audit log still shows which name was tried.
    target = User.objects.filter(**{User.USERNAME_FIELD: username}).first() or User(
        **{User.USERNAME_FIELD: username}
    )
    locked_out = bool(getattr(request, "axes_locked_out", False))
    record(
        actor=None,
        action="login",
        outcome=Outcome.DENIED,
        target=target,
        message=lockout_message() if locked_out else _failure_message(request),
        parameters={"locked_out": locked_out},
        request=request,
    )


def _failure_message(request) -> str:
    problem = sign_in_problem(request)
    return problem[1] if problem else "Wrong user name or password."
