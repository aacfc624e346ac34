"""vCenter tasks: started, journaled, awaited.

A mutating driver method is wrapped in `@journaled("clone:{name}")`: before it runs, a task
that a crashed or timed-out attempt left running for the same work (its id is in the journal
under that key) is waited for, so the method then sees its outcome in the inventory instead
of starting the same work twice. Inside the method, `Tasks.run` starts a task, journals its
id under the method's key until it ends, and waits for it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from pyVmomi import vim, vmodl

from composer.drivers.base import DriverError, DriverTimeout, Unreachable
from composer.drivers.vsphere.faults import translate
from composer.drivers.vsphere.session import Session, filter_spec

log = logging.getLogger(__name__)


class TaskJournal(Protocol):
    """Where task ids are kept while their tasks run (composer.task_journal in the portal)."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, task_id: str) -> None: ...

    def drop(self, key: str) -> None: ...


class MemoryJournal:
    """A journal for one process (command-line use and tests of the driver alone)."""

    def __init__(self) -> None:
        self.tasks: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.tasks.get(key)

    def put(self, key: str, task_id: str) -> None:
        self.tasks[key] = task_id

    def drop(self, key: str) -> None:
        self.tasks.pop(key, None)


class Tasks:
    def __init__(self, session: Session, journal: TaskJournal, timeout: float) -> None:
        self.session = session
        self.journal = journal
        self.timeout = timeout
        self.key: str | None = None  # the journal key of the method running now

    def state(self, task_id: str) -> dict | None:
        """state/error/result of a task, or None when vCenter no longer knows it."""
        task = vim.Task(task_id, stub=self.session.stub())
        try:
            rows = self.session.retrieve(
                filter_spec(vim.Task, ["info.state", "info.error", "info.result"], obj=task),
                f"read task {task_id}",
            )
        except DriverError as exc:
            if isinstance(exc.__cause__, vmodl.fault.ManagedObjectNotFound):
                return None
            raise
        return rows[0] if rows else None

    def wait(self, task_id: str, what: str) -> Any:
        deadline = time.monotonic() + self.timeout
        pause = 0.05
        while True:
            state = self.state(task_id)
            if state is None:
                raise DriverError(f"{what}: vCenter lost track of task {task_id}")
            if state["info.state"] == vim.TaskInfo.State.success:
                return state.get("info.result")
            if state["info.state"] == vim.TaskInfo.State.error:
                fault = state["info.error"]
                raise translate(fault, what) from fault
            if time.monotonic() >= deadline:
                raise DriverTimeout(
                    f"{what}: not finished after {self.timeout:g} s; vCenter task "
                    f"{task_id} may still be running and is picked up when the desktop is retried"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def settle(self, key: str) -> None:
        """Wait for a task an earlier attempt left running under `key`; whatever its outcome,
        the caller then looks at the inventory to see what is done."""
        task_id = self.journal.get(key)
        if task_id is None:
            return
        try:
            self.wait(task_id, f"earlier task {task_id} ({key})")
        except (DriverTimeout, Unreachable):
            raise  # still under way, or not known: keep its id for the next try
        except DriverError as exc:
            log.info("earlier task for %s ended: %s", key, exc)
        self.journal.drop(key)

    def run(self, what: str, start: Callable[[], Any], *, key: str | None = None) -> Any:
        """Start a task, journal its id under `key` (default: the running method's), wait for
        it, and forget it once it has ended. key="" journals nothing (read-only tasks, which
        are harmless to run twice)."""
        key = self.key if key is None else key
        task = self.session.call(what, start)
        if key:
            self.journal.put(key, task._moId)
        try:
            result = self.wait(task._moId, what)
        except (DriverTimeout, Unreachable):
            raise  # still under way, or not known: the journal keeps its id for the retry
        except DriverError:
            if key:
                self.journal.drop(key)
            raise
        if key:
            self.journal.drop(key)
        return result


def journaled(key_format: str):
    """Settle the method's journal key (formatted from its arguments) before it runs, and make
    it the key its tasks are journaled under."""

    def decorate(method):
        signature = inspect.signature(method)

        @functools.wraps(method)
        def run(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            key = key_format.format(**bound.arguments)
            tasks: Tasks = self.tasks
            tasks.settle(key)
            outer, tasks.key = tasks.key, key
            try:
                return method(self, *args, **kwargs)
            finally:
                tasks.key = outer

        return run

    return decorate
