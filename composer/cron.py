"""What `manage.py runcron` runs (composer/cron_scheduler.py): the reconciler, every
RECONCILE_INTERVAL_SECONDS (a minute by default)."""

from django.conf import settings
from rq import cron

from composer.reconciler import reconcile

cron.register(
    reconcile, queue_name="default", interval=settings.RECONCILE_INTERVAL_SECONDS, result_ttl=600
)
