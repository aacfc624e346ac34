"""Every badge is readable (issue 10, item 14): each desktop state and each status badge in
portal.css has text at WCAG AA contrast (4.5:1) on its background, and every desktop state
has a look of its own. Read from the stylesheet itself, as a browser would apply it."""

import re
from pathlib import Path

from audit.models import AuditEvent
from composer.models import DesktopTask, Operation
from pools.states import DesktopState

CSS = Path(__file__).resolve().parents[2] / "static" / "portal" / "portal.css"
AA = 4.5


def rules() -> list[tuple[list[str], dict[str, str]]]:
    text = re.sub(r"/\*.*?\*/", "", CSS.read_text(), flags=re.S)
    found = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
        declarations = dict(
            (name.strip(), value.strip())
            for name, _, value in (d.partition(":") for d in body.split(";") if ":" in d)
        )
        found.append(([s.strip() for s in selectors.split(",")], declarations))
    return found


def variables() -> dict[str, str]:
    for selectors, declarations in rules():
        if ":root" in selectors:
            return {k: v for k, v in declarations.items() if k.startswith("--")}
    raise AssertionError("no :root")


def badge(cls: str) -> tuple[str, str]:
    """(background, color) the badge `.state.state-x` or `.status.status-x` ends with."""
    values = variables()
    base = cls.split("-")[0]
    style: dict[str, str] = {}
    for selectors, declarations in rules():  # later rules win, as in the cascade
        if f".{base}" in selectors or f".{cls}" in selectors:
            style.update(declarations)
    resolve = lambda v: values.get(v[4:-1], v) if v.startswith("var(") else v  # noqa: E731
    return resolve(style["background"]), resolve(style["color"])


def luminance(hex_color: str) -> float:
    channels = [int(hex_color.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_checker_agrees_with_known_ratios():
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#1b7f3b", "#e3f4e8"), 2) == 4.43  # the old Available badge


def test_every_state_badge_passes_aa_and_has_a_look_of_its_own():
    looks = {}
    for state in DesktopState.values:
        background, color = badge(f"state-{state}")
        ratio = contrast(background, color)
        assert ratio >= AA, f"state {state}: {ratio:.2f}:1 ({color} on {background})"
        looks[state] = (background, color)
    assert len(set(looks.values())) == len(looks), looks


def test_every_status_badge_passes_aa():
    statuses = {
        *Operation.Status.values,
        *DesktopTask.Status.values,
        *AuditEvent.Outcome.values,
    }
    for status in sorted(statuses):
        background, color = badge(f"status-{status}")
        ratio = contrast(background, color)
        assert ratio >= AA, f"status {status}: {ratio:.2f}:1 ({color} on {background})"
