"""What an operation kind is: everything the generic machinery asks about one kind.

One subclass per kind, in its own module of this package (AWX's one class per job type).
Dispatch, preparation, the services, forms, views and templates ask the kind (through
`Operation.spec` or `composer.kinds.get(name)`) instead of comparing kind names, so adding a
kind is one module here (docs/adding-an-operation-kind.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # annotations only: the kinds are imported by composer.models' callers
    from collections.abc import Callable

    from composer.models import DesktopTask, Operation
    from pools.models import Desktop, ImageVersion, Pool

    Step = Callable[[object], None]

PROVISIONING = "provisioning"
MAINTENANCE = "maintenance"


@dataclass(frozen=True)
class HelpdeskAction:
    """A button on the helpdesk page that runs the kind on one desktop (portal/helpdesk.py)."""

    key: str  # in the confirmation's address
    label: str
    loses: str  # what the user loses, for the confirmation
    button: str
    done: str = ""  # what happens to the desktop once the user is off ("refreshed")
    # Files saved on the system disk go too (where the pool has no persistent disk).
    wipes_system_disk: bool = False
    extra: dict = field(default_factory=dict)  # the kind's options it runs with


class OperationKind:
    #: The value stored in Operation.kind, and the audit log's action for the operation.
    name: ClassVar[str]
    #: What pages call it ("Refresh"), and the audit log's name for its events.
    label: ClassVar[str]
    audit_label: ClassVar[str] = ""  # when the audit log says it otherwise ("Delete desktops")
    #: Where pages list it among the kinds.
    order: ClassVar[int] = 100

    #: The steps run on each desktop, in order, as (name, function) pairs; the runner records
    #: the name before running the function (composer/steps.py).
    steps: ClassVar[list[tuple[str, Step]]] = []

    #: Which concurrency limit its desktops count against (DESIGN.md, "Limits"):
    #: provisioning, or maintenance (halved while logoffs are forced).
    limit_class: ClassVar[str] = MAINTENANCE
    #: Whether it takes ready desktops out of service, so a pool's min_ready_desktops holds
    #: it back (composer/dispatch.py).
    disruptive: ClassVar[bool] = True
    #: Whether an administrator sees and approves a plan before it runs (recompose,
    #: rebalance): then plan() and check_plan() say what it will do and whether that holds.
    planned: ClassVar[bool] = False
    #: Offered on the pool page (and to carry on with halted or failed desktops).
    on_pool_page: ClassVar[bool] = False
    #: Irreversible for someone (a destroyed VM, a lost session): its button is red.
    dangerous: ClassVar[bool] = False
    #: Whether "users logged on: wait, or warn and force" applies: it is not the logoff itself.
    takes_logoff_policy: ClassVar[bool] = True
    #: Whether it has the options of a maintenance operation (schedule, on error) on its
    #: page; provisioning a new pool does not.
    maintenance_options: ClassVar[bool] = True
    #: The permission that lets helpdesk run it on one desktop, now (DESIGN.md, "Who uses
    #: it"); None: administrators only (pools.run_maintenance).
    helpdesk_permission: ClassVar[str | None] = None
    #: Its buttons on the helpdesk page (each needs helpdesk_permission).
    helpdesk_actions: ClassVar[list[HelpdeskAction]] = []
    #: Whether a desktop whose VM vanished from the hypervisor is no obstacle (delete).
    vm_may_be_gone: ClassVar[bool] = False
    #: Whether its desktops leave the pool (delete): a pool's resize counts them as gone.
    removes_desktops: ClassVar[bool] = False
    #: Whether replicas no desktop uses any more are removed once it ends.
    frees_replicas: ClassVar[bool] = False
    #: The plan's page part (templates/composer/plans/<name>.html), for planned kinds.
    plan_template: ClassVar[str] = ""
    #: Said on the form and, for the whole pool, after the desktop count.
    form_warning: ClassVar[str] = ""
    whole_pool_note: ClassVar[str] = ""
    #: The pool page's button for the whole pool, when it says more than the label.
    pool_button: ClassVar[str] = ""

    def __str__(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return f"<kind {self.name}>"

    # -- who may run it, and how urgently ----------------------------------------------------

    def helpdesk_sized(self, desktops: list[Desktop], whole_pool: bool, now: bool, extra) -> bool:
        """One desktop, now, of a kind helpdesk may run: what helpdesk's own permission
        covers, and what runs urgently ahead of bulk work whoever asks (Operation.urgent)."""
        return (
            self.helpdesk_permission is not None
            and len(desktops) == 1
            and not whole_pool
            and now
            and self.helpdesk_allows(extra or {})
        )

    def helpdesk_allows(self, extra: dict) -> bool:
        """Whether these kind options stay within what helpdesk may do (power: restart)."""
        return True

    # -- the request -------------------------------------------------------------------------

    def form_fields(self, pool: Pool) -> dict:
        """The kind's own fields on the operation form: name -> django form field."""
        return {}

    def extra(self, cleaned_data: dict) -> dict:
        """The kind's own options from the form, under the keys the steps read."""
        return {}

    def whole_pool(self, extra: dict) -> dict:
        """The options when it acts on the whole pool (delete: the pool goes too)."""
        return extra

    def acts_without_desktops(self, extra: dict) -> bool:
        """Whether it has work even with no desktop chosen (deleting an empty pool)."""
        return False

    def describe(self, options: dict) -> list[tuple[str, str]]:
        """Its own options as (label, value) for the operation page."""
        return []

    # -- planning (planned kinds) ------------------------------------------------------------

    def plan(self, pool: Pool, chosen: list[Desktop], extra: dict, busy: dict[int, int]):
        """The frozen plan (composer.plans.FrozenPlan) an administrator approves."""
        raise NotImplementedError(f"{self.name} runs without a plan")

    def check_plan(self, operation: Operation) -> list[str]:
        """What no longer matches the approved plan; empty when it still holds."""
        return []

    # -- running -----------------------------------------------------------------------------

    def prepare(self, operation: Operation) -> None:
        """Done once, before any desktop, after the plan was checked."""

    def replica_needed(self, operation: Operation, task: DesktopTask) -> tuple[int, int] | None:
        """(image version id, datastore id) of the replica the desktop needs before its
        steps run; made once per operation, before dispatch (composer/preparation.py)."""
        return None

    def steps_for(self, operation: Operation) -> list[tuple[str, Step]]:
        return self.steps

    def target_version(self, operation: Operation, desktop: Desktop) -> ImageVersion:
        """The image version a rebuilt desktop is built from."""
        return desktop.image_version

    def done_without_desktop(self, task: DesktopTask) -> bool:
        """Whether a task whose desktop row is gone finished its work (delete removed the
        row, then its worker died) rather than losing it to someone else."""
        return False

    def after(self, operation: Operation) -> None:
        """Once it has ended, whatever the outcome (composer/lifecycle.finish_if_done)."""
