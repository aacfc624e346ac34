"""rq cron configuration: `manage.py rqcron composer.cron` runs the reconciler every minute."""

from rq import cron

from composer.reconciler import reconcile

cron.register(reconcile, queue_name="default", interval=60, result_ttl=600)
