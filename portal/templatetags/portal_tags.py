from django import template

from composer.drivers import registry
from pools.models import WARN_PERCENT

register = template.Library()


@register.simple_tag
def warn_percent() -> str:
    """The use from which a datastore is flagged, as the pages say it: "95"."""
    return f"{WARN_PERCENT:.0f}"


@register.filter
def driver_label(endpoint) -> str:
    """The endpoint's driver as people know it ("VMware vSphere (vCenter)"), from the
    registry; an unknown driver by its name."""
    try:
        return registry.get(endpoint.driver).label
    except registry.UnknownDriver:
        return endpoint.driver


@register.filter
def mib(value) -> str:
    """Show a size kept in MiB as MiB, GiB or TiB."""
    try:
        size = float(value)
    except (TypeError, ValueError):
        return ""
    for unit in ("MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "MiB" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


@register.filter
def duration(value) -> str:
    """A timedelta as 1h 02m 03s."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


# One way to write a moment everywhere (issue 10, item 11): ISO date, 24-hour time and the
# zone it is shown in, which is the user's own (portal/time_zones.py).
# strftime, as Django's "Y-m-d H:i:s T" would write them but ten times faster: tables of 100
# rows carry one each (%Z is the zone's abbreviation, Django's "T").
STAMP = "%Y-%m-%d %H:%M:%S %Z"
CLOCK = "%H:%M:%S %Z"


@register.filter
def stamp(value) -> str:
    """A moment as 2026-12-01 14:05:09 CET, in the user's time zone."""
    from django.utils.timezone import localtime

    if value is None or value == "":
        return ""
    return localtime(value).strftime(STAMP)


@register.filter
def clock(value) -> str:
    """The time of day of a moment, with its zone (14:05:09 CET): in tables whose dates are
    all the same day, beside a full stamp."""
    from django.utils.timezone import localtime

    if value is None or value == "":
        return ""
    return localtime(value).strftime(CLOCK)
