"""What the log lines written now are about: the operation, the desktop, the job, and the
request that started the operation.

The engine binds these for the duration of a job or of one desktop's part of it, and the
portal's log formatter (portal/logs.py) adds them to every line, so an operator finds an
operation's whole life by its id (README, "Logs"). Context variables, not arguments: the
lines of the drivers, of the steps and of rq itself get them without being told. (Here, in
the engine, because composer must not import the portal.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

# The fields, in the order log lines show them.
FIELDS = ("request_id", "operation_id", "desktop_id", "desktop", "job_id", "worker")

_vars: dict[str, ContextVar] = {name: ContextVar(f"log_{name}", default=None) for name in FIELDS}


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Within it, log lines carry these fields (None: not known, the field left out); after
    it, whatever they carried before, also when it ends with an exception."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise TypeError(f"not log context fields: {', '.join(sorted(unknown))}")
    tokens = [(_vars[name], _vars[name].set(value)) for name, value in values.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, Any]:
    """The fields bound now (those with a value)."""
    return {name: value for name, var in _vars.items() if (value := var.get()) not in (None, "")}


def of_task(task) -> dict[str, Any]:
    """The fields of a desktop task, for a line logged outside its job (`extra=`)."""
    return {
        "operation_id": task.operation_id,
        "desktop_id": task.desktop_id,
        "desktop": task.desktop_name,
    }
