"""The RQ worker the portal runs (settings.RQ["WORKER_CLASS"]).

It keeps one vCenter session per endpoint for all the jobs it runs: each job runs in a
forked work horse, which takes the session cookie the worker's earlier jobs left in Redis
(composer/vsphere_sessions.py) instead of logging in again, and leaves it there when it ends.
When the worker stops it logs those sessions out, so vCenter's session cap is not used up by
workers that come and go. (A worker killed outright leaves its sessions to vCenter's idle
timeout, 30 minutes.)
"""

from __future__ import annotations

import logging
import os
import socket

from rq import Worker

from composer import vsphere_sessions

log = logging.getLogger(__name__)


class PortalWorker(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Inherited by every work horse this worker forks: whose sessions they use.
        os.environ[vsphere_sessions.OWNER_VARIABLE] = f"{socket.gethostname()}:{os.getpid()}"

    def teardown(self):
        if not self.is_horse:
            try:
                vsphere_sessions.log_out_all(os.environ[vsphere_sessions.OWNER_VARIABLE])
            except Exception:  # stopping must not fail on a vCenter that is gone
                log.exception("vCenter sessions of this worker not logged out")
        super().teardown()
