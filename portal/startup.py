"""Read the settings before anything else, so that a missing or bad variable stops the
process with its one-line message (portal/env.py) instead of a traceback: `manage.py` for
every command (migrate, the workers, the cron) and the web server (portal/wsgi.py, loaded
once by gunicorn's master process, deploy/gunicorn.conf.py)."""

import sys

from django.core.exceptions import ImproperlyConfigured


def load_settings_or_exit() -> None:
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 - imports portal/settings.py, which reads them
    except ImproperlyConfigured as error:
        sys.exit(f"Configuration error: {error}")
