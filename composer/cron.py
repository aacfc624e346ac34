"""What `manage.py runcron` runs (composer/cron_scheduler.py): the reconciler, every
RECONCILE_INTERVAL_SECONDS (a minute by default)."""

from django.conf import settings
from rq import cron

from composer.reconciler import reconcile
from composer.webhooks.delivery import requeue_due

cron.register(
    reconcile, queue_name="default", interval=settings.RECONCILE_INTERVAL_SECONDS, result_ttl=600
)
# Webhook deliveries whose job was lost (Redis restarted, a worker killed mid-send), apart
# from the reconciler, so that a slow inventory sync does not hold them up.
cron.register(
    requeue_due,
    queue_name="default",
    interval=settings.WEBHOOK_REQUEUE_INTERVAL_SECONDS,
    result_ttl=600,
)
