"""Personal API tokens on the site: each user's own (any role), and every user's for
administrators. The logic and its audit events are portal/tokens.py's, shared with the API."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from portal import tokens
from portal.permissions import require
from portal.token_forms import TokenForm


def _rows(queryset):
    return [(token, tokens.status(token)) for token in queryset]


@never_cache
def own_tokens(request):
    """The signed-in user's tokens, and a form for a new one. The new token's secret is on
    the answer to that form's POST and nowhere else: not in the session, not in the
    database (only its hash is), so reloading the page later never shows it again."""
    form = TokenForm(request.POST or None)
    created = secret = None
    if request.method == "POST" and form.is_valid():
        created, secret = tokens.issue(
            request.user, form.cleaned_data["name"], form.expires_at, request=request
        )
        form = TokenForm()  # an empty form for the next one
    return render(
        request,
        "portal/tokens.html",
        {
            "form": form,
            "rows": _rows(request.user.api_tokens.all()),
            "created": created,
            "secret": secret,
            "can_manage_all": tokens.can_manage_all(request.user),
        },
    )


@require(tokens.MANAGE_ALL, action="manage_api_tokens")
def all_tokens(request):
    """Every user's tokens (administrators), newest first."""
    return render(
        request,
        "portal/tokens_all.html",
        {"rows": _rows(tokens.visible_to(request.user))},
    )


def revoke(request, pk):
    """GET asks to confirm, POST revokes. Someone else's token is 404 unless the user may
    manage every token."""
    token = tokens.get_for(request.user, pk)
    mine = token.user_id == request.user.pk
    back = "tokens" if mine else "tokens_all"
    if request.method == "POST":
        if tokens.revoke(request.user, token, request=request):
            messages.success(request, f"Token {token} revoked: it no longer works.")
        else:
            messages.info(request, f"Token {token} was already revoked.")
        return redirect(back)
    return render(
        request,
        "portal/tokens_revoke.html",
        {"token": token, "status": tokens.status(token), "mine": mine, "back": back},
    )
