"""The services: what pages, commands and jobs call to change anything. Each checks
permission again (authorization.authorize), so no path around a view can skip it, and
writes the audit event in the same transaction as the change.

- pools.py       where new desktops go; creating and resizing a pool; choosing its datastores
- surplus.py     which desktops a shrinking pool may lose, and in what order
- requests.py    asking for an operation of any kind: one path, planned or not
- schedule.py    starting now or later, one pending schedule per desktop
- holds.py       which desktops a live operation holds, and locking them
- control.py     discard a plan, cancel, pause, resume
"""

from composer.services.authorization import authorize, system_actor
from composer.services.control import cancel, discard, pause, resume
from composer.services.errors import OperationRefused
from composer.services.holds import lock_desktops, lock_scheduled_desktops, skip_busy
from composer.services.pools import (
    PoolSpec,
    ResizePreview,
    create_pool,
    datastore_rooms,
    place_new_desktops,
    pool_desktop_count,
    preview_resize,
    resize_pool,
    set_pool_datastores,
    surplus_desktops,
)
from composer.services.requests import (
    Options,
    Preview,
    approve,
    attach_disk,
    helpdesk_sized,
    plan_operation,
    preview_operation,
    request_operation,
    required_permission,
    start_operation,
)

__all__ = [
    "OperationRefused",
    "Options",
    "PoolSpec",
    "Preview",
    "ResizePreview",
    "approve",
    "attach_disk",
    "authorize",
    "cancel",
    "create_pool",
    "datastore_rooms",
    "discard",
    "helpdesk_sized",
    "lock_desktops",
    "lock_scheduled_desktops",
    "pause",
    "plan_operation",
    "preview_operation",
    "preview_resize",
    "place_new_desktops",
    "pool_desktop_count",
    "request_operation",
    "required_permission",
    "resize_pool",
    "resume",
    "set_pool_datastores",
    "skip_busy",
    "start_operation",
    "surplus_desktops",
    "system_actor",
]
