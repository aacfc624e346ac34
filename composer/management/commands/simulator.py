"""Steer the simulated hypervisor from the shell, for demos and manual testing.

manage.py simulator status
manage.py simulator fail ENG-003 [--step customize]
manage.py simulator fail-rate 0.1
manage.py simulator outage 60          (the hypervisor answers nothing for 60 s)
manage.py simulator clear
manage.py simulator snapshot win11-gold 2026-12-patch   (a new snapshot of a golden image)
"""

from django.core.management.base import BaseCommand, CommandError

from composer import endpoint_drivers
from composer.drivers.base import DriverError
from composer.inventory import sync_endpoint
from pools.models import HypervisorEndpoint


class Command(BaseCommand):
    help = "Inspect the simulator or make it fail on purpose."

    def add_arguments(self, parser):
        parser.add_argument("--endpoint", default="simulator")
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status")
        fail = sub.add_parser("fail")
        fail.add_argument("desktop")
        fail.add_argument("--step", default=None, help="Only this step (for example customize).")
        rate = sub.add_parser("fail-rate")
        rate.add_argument("rate", type=float)
        outage = sub.add_parser("outage", help="The hypervisor answers nothing for a while.")
        outage.add_argument("seconds", type=float)
        sub.add_parser("clear")
        login = sub.add_parser("login", help="A user logs on to a desktop.")
        login.add_argument("desktop")
        login.add_argument("user")
        logout = sub.add_parser("logout", help="The user logs off a desktop.")
        logout.add_argument("desktop")
        snapshot = sub.add_parser(
            "snapshot", help="A golden image gets a new snapshot (as an image build leaves it)."
        )
        snapshot.add_argument("parent_vm")
        snapshot.add_argument("snapshot")

    def handle(self, *args, action, endpoint, **options):
        try:
            row = HypervisorEndpoint.objects.get(name=endpoint, driver="simulator")
        except HypervisorEndpoint.DoesNotExist:
            raise CommandError(f"no simulator endpoint named {endpoint!r}") from None
        sim = endpoint_drivers.for_endpoint(row)
        if action == "status":
            inventory = sim.inventory()
            for ds in inventory.datastores:
                self.stdout.write(f"{ds.name}: {ds.free_mb} of {ds.capacity_mb} MiB free")
            self.stdout.write(f"{len(inventory.vms)} VMs, {len(inventory.disks)} disks")
        elif action == "fail":
            sim.fail_desktop(options["desktop"], options["step"])
            self.stdout.write(
                f"{options['desktop']} will fail at {options['step'] or 'every step'}"
            )
        elif action == "fail-rate":
            if not 0 <= options["rate"] <= 1:
                raise CommandError("rate must be between 0 and 1")
            sim.set_fail_rate(options["rate"])
        elif action == "outage":
            if not 0 <= options["seconds"] <= 3600:
                raise CommandError("seconds must be between 0 and 3600")
            sim.set_outage(options["seconds"])
            self.stdout.write(f"the simulator answers nothing for {options['seconds']:g} s")
        elif action == "clear":
            sim.clear_failures()
        elif action == "login":
            sim.start_session(options["desktop"], options["user"])
        elif action == "logout":
            sim.end_session(options["desktop"])
        elif action == "snapshot":
            try:
                sim.add_snapshot(options["parent_vm"], options["snapshot"])
            except DriverError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{options['parent_vm']} has a new snapshot {options['snapshot']}")
        if action in ("login", "logout"):
            sync_endpoint(row)  # show it in the portal now rather than at the next reconcile
