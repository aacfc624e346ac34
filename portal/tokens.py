"""Issuing and revoking personal API tokens, audited: the one path the profile page, the
administrators' page, Django's admin and the API (portal/api/tokens.py) all take.

Anyone signed in manages their own tokens. Someone else's token is managed only with
MANAGE_ALL (administrators): to anyone else it does not exist (404, not 403, so that token
ids reveal nothing).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from audit.log import Outcome, record
from portal.models import ApiToken

# Administrators have every permission of our apps, auditors only view_*: this one is theirs.
MANAGE_ALL = "portal.delete_apitoken"


def validate_name(name: str) -> None:
    """A token's name is shown in lists and the audit log: printable text only."""
    if not name.isprintable():
        raise ValidationError("Use printable characters only (no line breaks or controls).")


def can_manage_all(user) -> bool:
    return user.has_perm(MANAGE_ALL)


def visible_to(user) -> QuerySet[ApiToken]:
    """The tokens `user` may see and revoke: their own, or every one with MANAGE_ALL."""
    tokens = ApiToken.objects.select_related("user")
    return tokens if can_manage_all(user) else tokens.filter(user=user)


def get_for(user, pk) -> ApiToken:
    """The token `pk` if `user` may manage it, else Http404 (also for a foreign one)."""
    token = visible_to(user).filter(pk=pk).first()
    if token is None:
        raise Http404("No such token.")
    return token


def issue(actor, name: str, expires_at=None, request=None) -> tuple[ApiToken, str]:
    """A new token of the actor's own, and its secret (shown once, never stored)."""
    with transaction.atomic():
        token, secret = ApiToken.issue(actor, name, expires_at)
        record(
            actor=actor,
            action="create_api_token",
            outcome=Outcome.SUCCEEDED,
            target=token,
            parameters={"expires_at": expires_at.isoformat() if expires_at else None},
            request=request,
        )
    return token, secret


def revoke(actor, token: ApiToken, request=None) -> bool:
    """Stop the token at once (the row stays, for its history). False if it already was:
    nothing is written then."""
    if token.user_id != actor.pk and not can_manage_all(actor):
        raise Http404("No such token.")
    with transaction.atomic():
        now = timezone.now()
        # One statement decides: of two revocations at once, the second finds the row
        # revoked (it waits for the first's row lock, then re-reads) and writes nothing.
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if not changed:
            token.refresh_from_db(fields=["revoked_at"])
            return False
        token.revoked_at = now
        record(
            actor=actor,
            action="revoke_api_token",
            outcome=Outcome.SUCCEEDED,
            target=token,
            parameters={"owner": token.user.get_username()},
            request=request,
        )
    return True


def status(token: ApiToken) -> str:
    """ "active", "expired" or "revoked"."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return "expired"
    return "active"
