"""The pool page's desktop rows, written in Python rather than by the template engine.

A page shows 100 rows and the live part sends changed rows to every watcher: through
{% include %} a row took about 0.24 ms, a fifth of the whole page at 50,000 desktops on
PostgreSQL; format_html, which escapes every value, takes a fraction of that
(bench/pages.py).
"""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from pools.sessions import session_of
from portal.templatetags.portal_tags import mib, stamp

register = template.Library()

ROW = (
    '<tr id="desktop-{}"{}>{}<td><a href="{}{}/">{}</a></td>'
    '<td><span class="state state-{}">{}</span>{}</td><td>{}</td><td>{}</td><td>{}</td>'
    "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n"
)
SWAP = format_html(' hx-swap-oob="{}"', "true")
MISSING = format_html('<span class="flag">{}</span>', "missing")
HALTED = format_html('<span class="flag">{}</span>', "task halted")
# No recent report from the desktop's agent on a hypervisor that cannot tell (pools/sessions.py).
UNKNOWN = format_html(
    '<span class="flag session-unknown" title="{}">{}</span>',
    "No recent report from the desktop's agent: maintenance treats it as logged on",
    "unknown",
)


@register.simple_tag
def desktop_rows(desktops, can_select=False, oob=False, reports_sessions=True):
    """One <tr> per desktop. `oob`: sent by the live part, swapped in place out of band; its
    checkbox is then only a placeholder htmx replaces by the one on the page (hx-preserve),
    ticked or not. `reports_sessions`: whether the pool's hypervisor reports sessions (else
    its desktops' agents do, and a desktop without a recent report shows "unknown")."""
    prefix = reverse("pools:desktop", args=[0])[: -len("0/")]
    now = timezone.now()
    return format_html_join(
        "",
        ROW,
        (_row(d, prefix, can_select, oob, _session(d, reports_sessions, now)) for d in desktops),
    )


def _session(d, reports_sessions: bool, now):
    found = session_of(d, reports_sessions, now)
    return UNKNOWN if found.unknown else found.user


def _row(d, prefix: str, can_select: bool, oob: bool, session) -> tuple:
    select = ""
    if can_select and oob:
        select = format_html('<td><input id="pick-{}" hx-preserve></td>', d.pk)
    elif can_select:
        select = format_html(
            '<td><input type="checkbox" name="desktop" value="{}" id="pick-{}" hx-preserve '
            'aria-label="Select {}"></td>',
            d.pk,
            d.pk,
            d.name,
        )
    flags = ""
    if d.missing or d.task_halted or d.reason:
        flags = format_html(
            "{}{}{}",
            format_html(" {}", MISSING) if d.missing else "",
            format_html(" {}", HALTED) if d.task_halted else "",
            format_html('<div class="reason">{}</div>', d.reason) if d.reason else "",
        )
    return (
        d.pk,
        SWAP if oob else "",
        select,
        prefix,
        d.pk,
        d.name,
        d.state,
        d.get_state_display(),
        flags,
        getattr(d, "step", ""),
        d.datastore.name,
        d.image_version.snapshot,
        d.assigned_user,
        session,
        stamp(d.state_changed_at),
        mib(d.delta_mb) if d.delta_mb else "",
    )
