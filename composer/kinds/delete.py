"""Delete: desktops, or the whole pool, with the choice to keep persistent disks."""

from __future__ import annotations

from django import forms
from django.db import transaction

from audit.log import record
from composer import steps
from composer.kinds import OperationKind, register
from pools.models import Pool


@register
class Delete(OperationKind):
    name = "delete"
    label = "Delete"
    audit_label = "Delete desktops"
    order = 70
    on_pool_page = True
    dangerous = True
    vm_may_be_gone = True  # nothing to wait for or power off: the rest is cleaned up
    frees_replicas = True
    removes_desktops = True
    pool_button = "Delete pool"
    form_warning = "Deleting cannot be undone: the desktops' virtual machines are destroyed."
    whole_pool_note = ", and then the pool itself"
    steps = [
        ("wait_for_logoff", steps.wait_for_logoff),
        ("deleting", steps.deleting),
        ("power_off", steps.power_off),
        ("release_disks", steps.release_disks),
        ("delete_vm", steps.delete_vm),
        ("forget", steps.forget),
    ]

    def form_fields(self, pool):
        return {
            "keep_disks": forms.BooleanField(
                required=False,
                initial=True,
                label="Keep persistent disks",
                help_text="Kept disks stay listed, detached, and can be attached to a desktop "
                "later.",
            )
        }

    def extra(self, cleaned_data):
        return {"keep_disks": cleaned_data["keep_disks"]}

    def whole_pool(self, extra):
        return {**extra, "delete_pool": True}

    def acts_without_desktops(self, extra):
        return bool(extra.get("delete_pool"))  # an empty pool is still deleted

    def describe(self, options):
        shown = []
        if "keep_disks" in options:
            shown.append(("Persistent disks", "kept" if options["keep_disks"] else "deleted"))
        if options.get("delete_pool"):
            shown.append(("Pool", "deleted with its desktops"))
        return shown

    def done_without_desktop(self, task):
        return task.step == "forget"  # this task deleted the row, then its worker died

    def after(self, operation):
        """The pool goes once its last desktop has gone, when the whole pool was deleted."""
        if not operation.options.get("delete_pool"):
            return
        pool = Pool.objects.filter(pk=operation.pool_id).first()
        if pool is None or pool.desktops.exists():
            return
        with transaction.atomic():
            # The audit event comes last: record() takes the audit log's lock, and taking it
            # before the row locks of the delete could deadlock with a finishing operation.
            pool_pk = pool.pk
            pool.delete()
            pool.pk = pool_pk  # so the event still names the pool it recorded
            record(
                actor=operation.requested_by,
                action="pool_deleted",
                outcome="succeeded",
                target=pool,
                operation=operation,
            )
