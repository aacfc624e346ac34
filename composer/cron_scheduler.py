"""The cron process (`manage.py runcron`): rq's cron scheduler, made to outlive Redis.

rq's CronScheduler exits with code 1 at the first Redis error, so after a Redis restart
nobody ran the reconciler until someone restarted cron. This one logs the error, waits
(1 s doubling to 30 s) and carries on: it registers again and enqueues what became due
meanwhile. What it runs is configured in composer/cron.py.
"""

from __future__ import annotations

import logging
import time

import redis
from django_rq.cron import DjangoCronScheduler
from rq.exceptions import StopRequested

log = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0


class ReconnectingCronScheduler(DjangoCronScheduler):
    def start(self) -> None:
        self._install_signal_handlers()
        backoff = FIRST_BACKOFF
        try:
            while True:
                try:
                    self.register_birth()
                    while True:
                        self._tick()
                        backoff = FIRST_BACKOFF
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                    log.error("cron: Redis unreachable (%s); trying again in %.0f s", exc, backoff)
                    time.sleep(backoff)
                    backoff = min(MAX_BACKOFF, backoff * 2)
        except (StopRequested, KeyboardInterrupt):
            log.info("cron %s: stopping", self.name)
        finally:
            try:
                self.register_death()
            except redis.exceptions.RedisError:
                pass  # Redis is gone; its registry entry expires on its own

    def _tick(self) -> None:
        # rq's CronScheduler.start() loop body: enqueue what is due, heartbeat, sleep.
        if self.enqueue_jobs():
            self.save()
        self.heartbeat()
        sleep_time = self.calculate_sleep_interval()
        if sleep_time > 0:
            time.sleep(sleep_time)
