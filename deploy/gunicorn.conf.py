"""gunicorn's settings for the portal (`make serve`, deploy/portal-web.service), read from the
environment like the portal's own (README, "The web server: make serve")."""

import os
import sys

from django.core.exceptions import ImproperlyConfigured

from portal.env import env_choice, env_int

# bind: behind a TLS-terminating proxy on the same host by default; BIND takes any gunicorn
# address (0.0.0.0:8000, unix:/run/portal/web.sock). gunicorn alone would bind 0.0.0.0 when
# PORT is set: ours stays on the loopback.
# workers: synchronous ones, as a page costs a few queries and never waits on a hypervisor
# (that is the RQ workers' job). Two per core plus one, as gunicorn advises, but at most 8 by
# default: each holds a database connection, and a big host must not use up PostgreSQL's.
try:
    bind = [os.environ.get("BIND") or f"127.0.0.1:{env_int('PORT', 8000, minimum=1)}"]
    workers = env_int("WEB_CONCURRENCY", min(2 * (os.cpu_count() or 1) + 1, 8), minimum=1)
    log_format = env_choice("LOG_FORMAT", "plain", ["plain", "json"])
except ImproperlyConfigured as error:
    sys.exit(f"Configuration error: {error}")

# A worker silent this long is killed and replaced; on SIGTERM (systemctl stop) requests
# under way get this long to finish.
timeout = 60
graceful_timeout = 30
keepalive = 5

# Load the portal once in the master and fork the workers from it: a missing or bad variable
# stops gunicorn with one line (portal/startup.py) instead of each worker failing in turn.
# A new release needs a restart (not a HUP) to load the new code.
preload_app = True

# Access log on stdout, errors on stderr: journalctl -u portal-web shows both.
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s" request_id=%({x-request-id}o)s'

# LOG_FORMAT=json: gunicorn's own lines (start, stop, workers, each request) are JSON too, in
# the portal's format (portal/logs.py), so one collector reads every line of the web server.
if log_format == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "portal.logs.JsonFormatter"}},
        "handlers": {
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            },
            "error": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        # gunicorn merges this over its defaults, whose root names a handler not here.
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "gunicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False},
        },
    }

# Addresses whose X-Forwarded-Proto/-For gunicorn believes: the TLS proxy's. The loopback by
# default (a proxy on this host); a comma-separated list when it runs elsewhere.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"

# No control socket (gunicorn's default puts one in the user's home, shared by every gunicorn
# of that user): systemctl and signals are how the portal's web server is managed.
control_socket_disable = True
