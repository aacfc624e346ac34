"""composer/liveness.py: the one rule the reconciler acts on and the dashboard shows."""

import os
import socket
import subprocess
from datetime import timedelta
from types import SimpleNamespace

from django.utils import timezone

from composer.liveness import HEARTBEAT_GRACE, heartbeat_age, pid_alive, worker_answering


def test_a_process_is_alive_until_it_exits_even_before_it_is_reaped():
    assert pid_alive(os.getpid())
    child = subprocess.Popen(["true"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not pid_alive(child.pid)
    child.wait()
    assert not pid_alive(child.pid)


def worker(beat_ago=None, pid=None):
    beat = timezone.now() - beat_ago if beat_ago is not None else None
    return SimpleNamespace(hostname=socket.gethostname(), pid=pid, last_heartbeat=beat)


def test_a_busy_worker_answers_within_the_grace_an_idle_one_whatever_its_beat():
    late = worker(HEARTBEAT_GRACE + timedelta(seconds=5))
    assert heartbeat_age(late) > HEARTBEAT_GRACE
    assert not worker_answering(late, "busy", heartbeat_age(late))
    assert worker_answering(late, "idle", heartbeat_age(late))
    recent = worker(timedelta(seconds=5))
    assert worker_answering(recent, "busy", heartbeat_age(recent))
    assert not worker_answering(worker(), "busy", None)


def test_a_worker_of_this_host_whose_process_died_does_not_answer():
    child = subprocess.Popen(["true"])
    child.wait()
    gone = worker(timedelta(seconds=1), pid=child.pid)
    assert not worker_answering(gone, "idle", heartbeat_age(gone))
    assert worker_answering(worker(timedelta(seconds=1), pid=os.getpid()), "idle", None)
