from django import template

register = template.Library()


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
