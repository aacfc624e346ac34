"""The helpdesk page: find a user's desktop, then refresh, restart or log it off.

One search box matches desktop names, assigned users and logged-on users (partial, any case).
Each action goes through a confirmation that says what the user will lose and takes an
optional message to them, then starts the operation through composer.services, which checks
the permission again. Progress shows on the same page: the results poll while one of the
desktops shown has an operation under way.

Users logged on: helpdesk acts because a user asked for help, often on the phone, and a
desktop that needs fixing may be too broken to log off from. Waiting for a logoff ("wait")
could leave the fix pending for hours, so the operation forces the logoff: whoever is logged
on gets the message (or the engine's standard warning when none is given) and is logged off
GRACE_SECONDS later. With nobody logged on the policy changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from composer import agent_sessions, dispatch, kinds, services
from composer.models import DesktopTask, Operation
from composer.services.authorization import MAINTENANCE, allowed
from pools.models import Desktop
from pools.states import BUSY, DesktopState
from portal.operation_forms import new_submission
from portal.permissions import deny, require

# Seconds between the warning and the forced logoff.
GRACE_SECONDS = 60
# Desktops a search shows; a wider match asks for more letters.
RESULTS_SHOWN = 25
UNREACHABLE = (DesktopState.PROVISIONING, DesktopState.DELETING)


@dataclass(frozen=True)
class Action:
    """A helpdesk button: a kind's HelpdeskAction, with the kind and its permission."""

    key: str
    label: str
    kind: str
    extra: dict
    permission: str
    loses: str  # what the user loses, for the confirmation
    button: str
    done: str
    wipes_system_disk: bool
    takes_logoff_policy: bool


def actions() -> dict[str, Action]:
    """Every kind's helpdesk buttons (composer/kinds/: helpdesk_actions), by key."""
    return {
        action.key: Action(
            key=action.key,
            label=action.label,
            kind=kind.name,
            extra=action.extra,
            permission=kind.helpdesk_permission,
            loses=action.loses,
            button=action.button,
            done=action.done,
            wipes_system_disk=action.wipes_system_disk,
            takes_logoff_policy=kind.takes_logoff_policy,
        )
        for kind in kinds.all_kinds()
        for action in kind.helpdesk_actions
    }


def may(user, action: Action) -> bool:
    return allowed(user, action.permission, MAINTENANCE)


def options(action: Action, message: str) -> services.Options:
    """Refresh and restart force the logoff after the message and GRACE_SECONDS (see the
    module's docstring). Log off is the logoff itself: the message is kept with it."""
    if not action.takes_logoff_policy:
        return services.Options(warning_message=message)
    return services.Options(
        logoff_policy=Operation.LogoffPolicy.FORCE,
        warning_message=message,
        grace_seconds=GRACE_SECONDS,
    )


class ConfirmForm(forms.Form):
    message = forms.CharField(
        required=False,
        max_length=500,
        label="Message to the user (optional)",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    q = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)
    # One-time token: a double click on the button starts one operation.
    submission = forms.CharField(
        required=False, max_length=64, widget=forms.HiddenInput, initial=new_submission
    )


def search_desktops(q: str) -> tuple[list[Desktop], bool]:
    """Desktops whose name, assigned user or logged-on user contains q; (shown, more)."""
    found = list(
        Desktop.objects.filter(
            Q(name__icontains=q) | Q(assigned_user__icontains=q) | Q(session_user__icontains=q)
        )
        .select_related("pool__endpoint", "datastore")
        .order_by("name")[: RESULTS_SHOWN + 1]
    )
    for desktop in found:
        desktop.session = agent_sessions.session(desktop)  # a user, nobody, or unknown
    return found[:RESULTS_SHOWN], len(found) > RESULTS_SHOWN


def attach_current(desktops: list[Desktop]) -> None:
    """Set `current` on each desktop: its task in an operation under way, or None."""
    tasks = {}
    if desktops:
        for task in (
            DesktopTask.objects.held()
            .filter(desktop_id__in=[d.pk for d in desktops])
            .select_related("operation__pool__endpoint")
            .order_by("operation__requested_at")
        ):
            tasks.setdefault(task.desktop_id, task)
        # Why each one waits ("waiting for a free slot: 8 of 8 in use on vc-1").
        reasons = dispatch.waiting_reasons(list(tasks.values()))
        for task in tasks.values():
            task.waiting_for = reasons.get(task.pk, "")
    for desktop in desktops:
        desktop.current = tasks.get(desktop.pk)
        desktop.busy = desktop.current is not None
        # Being built or deleted: nothing to refresh, restart or log off yet.
        desktop.unreachable = desktop.state in UNREACHABLE


def watched(request) -> Desktop | None:
    """The desktop the last action was on (`?watch=<id>`, set by confirm's redirect): it stays
    on the page with its live state whatever the search matches, so the row does not vanish
    when, say, its user is logged off before the refresh. Anything but a known id is ignored."""
    raw = request.GET.get("watch", "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return None
    return Desktop.objects.select_related("pool", "datastore").filter(pk=int(raw)).first()


@require("pools.view_desktop", action="helpdesk")
def search(request):
    q = request.GET.get("q", "").strip()[:100]
    desktops, more = search_desktops(q) if q else ([], False)
    acted_on = watched(request)
    if acted_on is not None and acted_on.pk not in {d.pk for d in desktops}:
        desktops.insert(0, acted_on)
    attach_current(desktops)
    context = {
        "q": q,
        "acted_on": acted_on,
        "desktops": desktops,
        "more": more,
        "actions": [a for a in actions().values() if may(request.user, a)],
        # Polls while something happens to a desktop shown, so its row follows it live.
        "live": any(d.busy or d.state in BUSY for d in desktops),
        "poll_seconds": settings.POLL_SECONDS,
    }
    if request.htmx:
        return render(request, "portal/helpdesk.html#results", context)
    return render(request, "portal/helpdesk.html", context)


@require("pools.view_desktop", action="helpdesk")
def confirm(request, pk: int, action: str):
    """GET: what will happen and what the user loses. POST: start it."""
    chosen = actions().get(action)
    if chosen is None:
        raise Http404("No such action.")
    desktop = get_object_or_404(Desktop.objects.select_related("pool"), pk=pk)
    if not may(request.user, chosen):
        raise deny(request, chosen.kind, target=desktop)
    attach_current([desktop])
    form = ConfirmForm(
        request.POST if request.method == "POST" else None,
        initial={"q": request.GET.get("q", "")},
    )
    form.fields["message"].help_text = (
        "Kept with the operation in the audit trail."
        if not chosen.takes_logoff_policy
        else "Shown to the logged-on user before the logoff."
    )
    if request.method == "POST" and form.is_valid():
        q = form.cleaned_data["q"] or desktop.name
        back = f"{reverse('helpdesk')}?{urlencode({'q': q, 'watch': desktop.pk})}"
        submission = form.cleaned_data["submission"]
        earlier = Operation.objects.filter(submission=submission).first() if submission else None
        if earlier is not None:  # the same confirmation sent twice: it is under way already
            messages.success(request, f"{chosen.label} of {desktop.name} started ({earlier}).")
            return redirect(back)
        if desktop.current is not None:
            messages.error(
                request,
                f"{desktop.name} is already in {desktop.current.operation}; wait for it to end.",
            )
            return redirect(back)
        if desktop.unreachable:
            messages.error(
                request, f"{desktop.name} is {desktop.get_state_display().lower()}: try later."
            )
            return redirect(back)
        try:
            operation = services.request_operation(
                request.user,
                desktop.pool,
                chosen.kind,
                [desktop],
                options(chosen, form.cleaned_data["message"]),
                chosen.extra,
                request=request,
                submission=submission,
            )
        except services.OperationRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{chosen.label} of {desktop.name} started ({operation}).")
            return redirect(back)
    return render(
        request,
        "portal/helpdesk_confirm.html",
        {
            "desktop": desktop,
            "action": chosen,
            "form": form,
            "grace_seconds": GRACE_SECONDS,
            "back": f"{reverse('helpdesk')}?{urlencode({'q': form['q'].value() or ''})}",
        },
    )
