"""Load the demo once: a simulated hypervisor, three datastores, two image versions, demo
users and a pool of 10 desktops provisioned by the worker like any other pool, each desktop
assigned to a user, three of whom log on once it is provisioned."""

import json
import secrets

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand
from django.db import transaction

from composer import endpoint_drivers
from composer.inventory import sync_datastores
from composer.queue import enqueue_on_commit
from composer.services import PoolSpec, create_pool
from pools.models import BaseImage, HypervisorEndpoint, ImageVersion, Overcommit
from portal import demo
from portal.roles import ADMINISTRATORS, AUDITORS, HELPDESK

GIB = 1024
DEMO_USERS = [("admin", ADMINISTRATORS), ("helpdesk", HELPDESK), ("auditor", AUDITORS)]
LOGINS_FILE = "demo_logins.json"


class Command(BaseCommand):
    help = "Load demo data once (does nothing if it is already there)."

    def handle(self, *args, **options):
        if HypervisorEndpoint.objects.filter(name="simulator").exists():
            self.stdout.write("Demo data already loaded.")
            return
        endpoint = HypervisorEndpoint.objects.create(name="simulator", driver="simulator")
        sim = endpoint_drivers.for_endpoint(endpoint)
        sim.reset()
        sim.add_datastore("ds-gold-ssd", 500 * GIB)
        sim.add_datastore("ds-silver", 1024 * GIB)
        sim.add_datastore("ds-bronze-nl", 2048 * GIB)
        # A third snapshot is there for an administrator to register (Images page).
        sim.add_parent_vm(
            "win11-gold",
            ["2026-10-patch", "2026-11-patch", "2026-12-patch"],
            disk_mb=40 * GIB,
            used_mb=19 * GIB,
        )
        datastores = {ds.name: ds for ds in sync_datastores(endpoint)}

        image = BaseImage.objects.create(
            endpoint=endpoint, name="Windows 11 Enterprise", parent_vm="win11-gold"
        )
        v1 = ImageVersion.objects.create(
            image=image, snapshot="2026-10-patch", disk_mb=40 * GIB, used_mb=18 * GIB
        )
        ImageVersion.objects.create(
            image=image, snapshot="2026-11-patch", disk_mb=40 * GIB, used_mb=19 * GIB
        )

        logins = {}
        with transaction.atomic():
            for username, group in DEMO_USERS:
                password = secrets.token_urlsafe(9)
                user = User.objects.create_user(username, password=password)
                user.groups.add(Group.objects.get(name=group))
                logins[username] = password
        path = settings.DATA_DIR / LOGINS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(logins, indent=2))
        path.chmod(0o600)

        admin = User.objects.get(username="admin")
        provision = create_pool(
            admin,
            PoolSpec(
                name="Engineering",
                naming_pattern="ENG-{n:fixed=3}",
                size=10,
                datastores=[datastores["ds-gold-ssd"], datastores["ds-silver"]],
                image_version=v1,
                overcommit=Overcommit.CONSERVATIVE,
                persistent_disk_mb=5 * GIB,
                domain="corp.example",
            ),
        )
        # Somebody for the helpdesk to help: each desktop has its user, and the first few
        # log on once the pool is provisioned (portal/demo.py).
        demo.assign_users(provision.pool)
        enqueue_on_commit(demo.log_on_when_provisioned, f"demo-log-on-{provision.pk}", provision.pk)
        self.stdout.write(
            self.style.SUCCESS("Demo data loaded; the worker provisions pool Engineering.")
        )
