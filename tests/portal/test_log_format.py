"""The log formats of portal/logs.py, on records made as the logging module makes them: the
JSON line is one line whatever the message holds, and both formats carry the ids bound by
the engine (composer/log_context.py) and the request's."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from django.test import RequestFactory

from composer import log_context
from portal.logs import JsonFormatter, PlainFormatter, current_request


def record(message="hello", *args, level=logging.INFO, exc_info=None, **extra):
    logger = logging.getLogger("portal.test")
    return logger.makeRecord(
        logger.name, level, __file__, 1, message, args, exc_info, extra=extra or None
    )


def as_json(made) -> dict:
    text = JsonFormatter().format(made)
    assert "\n" not in text and "\r" not in text
    assert text.splitlines() == [text]  # no character Python takes for a line break either
    return json.loads(text)


def test_a_json_line_has_time_level_logger_and_message():
    line = as_json(record("desktop %s: %d steps", "VDI-001", 3, level=logging.WARNING))
    assert line["message"] == "desktop VDI-001: 3 steps"
    assert (line["level"], line["logger"]) == ("WARNING", "portal.test")
    assert line["time"].endswith("Z") and "T" in line["time"]  # ISO 8601, UTC


@pytest.mark.parametrize(
    "message",
    [
        "two\nlines\r\nand a tab\t",
        "Zoë's desktop — 東京 🖥",
        "separators \u2028 \u2029 and a NEL \x85",
        "a lone surrogate \udcff from an undecodable path",
        'quotes " and a backslash \\',
    ],
)
def test_any_message_stays_one_line_and_reads_back(message):
    line = as_json(record("%s", message))
    assert line["message"] == message


def test_a_traceback_goes_into_one_field():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        line = as_json(record("failed", level=logging.ERROR, exc_info=sys.exc_info()))
    assert line["message"] == "failed"
    assert line["traceback"].startswith("Traceback (most recent call last)")
    assert line["traceback"].endswith("ValueError: bad\nvalue")


def test_a_message_whose_arguments_do_not_fit_is_still_one_line():
    line = as_json(record("%d desktops", "many"))
    assert "desktops" in line["message"]


def test_the_engines_ids_are_bound_for_a_while_then_gone():
    with log_context.bound(operation_id=12, desktop_id=345, desktop="VDI-345", job_id="j-1"):
        line = as_json(record())
        plain = PlainFormatter().format(record())
        with log_context.bound(desktop_id=346, desktop="VDI-346"):  # carrying on
            assert as_json(record())["desktop_id"] == 346
        assert as_json(record())["desktop_id"] == 345
    assert (line["operation_id"], line["desktop_id"], line["desktop"]) == (12, 345, "VDI-345")
    assert line["job_id"] == "j-1"
    assert plain.endswith("hello  op=12 desktop=345 desktop_name=VDI-345 job=j-1")
    assert "operation_id" not in as_json(record())
    with pytest.raises(RuntimeError), log_context.bound(operation_id=13):
        raise RuntimeError
    assert "operation_id" not in as_json(record())


def test_ids_given_to_the_logger_win():
    with log_context.bound(operation_id=12):
        line = as_json(record(operation_id=99, desktop_id=7, desktop="VDI-7"))
    assert (line["operation_id"], line["desktop_id"]) == (99, 7)


@pytest.mark.django_db
def test_the_request_id_and_user_of_the_request(users):
    request = RequestFactory().get("/")
    request.request_id = "ab12"
    request.user = users["helpdesk"]
    token = current_request.set(request)
    try:
        line = as_json(record())
        plain = PlainFormatter().format(record())
    finally:
        current_request.reset(token)
    assert (line["request_id"], line["user"]) == ("ab12", "hal")
    assert plain.endswith("hello  req=ab12 user=hal")
    # Django's line about a response comes after the middleware: from the record's request.
    assert as_json(record(request=request, status_code=403))["request_id"] == "ab12"
    assert "request_id" not in as_json(record())


def test_a_user_not_looked_up_yet_is_not_looked_up_for_a_log_line():
    from django.contrib.auth.models import AnonymousUser
    from django.utils.functional import SimpleLazyObject

    def lookup():
        raise AssertionError("a log line queried the user")

    request = RequestFactory().get("/")
    request.request_id = "ab12"
    request.user = SimpleLazyObject(lookup)
    line = as_json(record(request=request))
    assert line["request_id"] == "ab12" and "user" not in line
    request.user = AnonymousUser()
    assert "user" not in as_json(record(request=request))
