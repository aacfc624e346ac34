"""Act on the estate: register an image version, create a pool, choose its datastores, resize
it, start an operation (or preview it: dry_run), and approve, discard, pause, resume or cancel one.

Each view checks the request as its page does (the same forms, fed from the JSON) and calls
the same service (composer.services, composer.images), which checks permission again and
writes the audit event. The POSTs that start work honour an Idempotency-Key.
"""

from __future__ import annotations

from django import forms
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from composer import images, kinds, naming, services
from composer.capacity import DoesNotFit
from composer.drivers.base import DriverError
from composer.models import Operation
from composer.services.authorization import MAINTENANCE, allowed
from composer.services.holds import busy
from pools.models import BaseImage, Pool
from portal.api import action_serializers as s
from portal.api.access import requires
from portal.api.idempotency import HEADER, idempotent, submission_token
from portal.api.inventory import PoolList
from portal.api.problems import Conflict, problem_response
from portal.api.serializers import PoolSerializer
from portal.operation_forms import OperationForm
from portal.pool_forms import PoolDatastoresForm, PoolForm, PoolResizeForm

IDEMPOTENCY = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    description="Retrying with the same key returns the first answer instead of starting "
    "the work again (kept 24 h); the same key with another body is 422.",
)
PROBLEM = OpenApiResponse(description="problem+json (RFC 9457)")


def _errors_of(form, renamed: dict | None = None) -> dict:
    """A form's errors as the API's field errors, under the API's names."""
    renamed = renamed or {}
    out = {}
    for field, errors in form.errors.items():
        name = "non_field_errors" if field == "__all__" else renamed.get(field, field)
        out.setdefault(name, []).extend(errors)
    return out


def _valid(serializer_class, request):
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["Send a JSON object."]})
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _unreachable(exc) -> Response:
    return problem_response(503, f"The hypervisor did not answer: {exc}")


# -- image versions ---------------------------------------------------------------------------


class ImageVersionCreate(APIView):
    """Register a snapshot of the image's parent VM as a new version (the image page's form):
    the hypervisor is asked whether the VM and snapshot exist and what their disks take.
    A snapshot the hypervisor does not have is 400; a hypervisor that does not answer, 503."""

    permission_classes = [requires("pools.add_imageversion", action="register_image_version")]

    @extend_schema(
        request=s.VersionRequestSerializer,
        parameters=[IDEMPOTENCY],
        responses={201: s.RegisteredVersionSerializer, 400: PROBLEM, 409: PROBLEM, 503: PROBLEM},
    )
    @idempotent
    def post(self, request, pk: int):
        image = get_object_or_404(BaseImage.objects.select_related("endpoint"), pk=pk)
        data = _valid(s.VersionRequestSerializer, request)
        try:
            version = images.register_version(
                request.user, image, data["snapshot"], request=request._request
            )
        except images.VersionRefused as exc:
            if exc.unreachable:
                return _unreachable(exc)
            raise exceptions.ValidationError({"snapshot": [str(exc)]}) from None
        return Response(s.RegisteredVersionSerializer(version).data, status=status.HTTP_201_CREATED)


# -- pools ------------------------------------------------------------------------------------


class PoolCollection(PoolList):
    """GET: every pool (portal.api.inventory.PoolList). POST: create a pool and provision its
    desktops, with the pool form's rules (name, naming pattern, room on the datastores; a
    warning level passed needs accept_warnings)."""

    def get_permissions(self):
        if self.request.method == "POST":
            return [requires("pools.add_pool", action="create_pool")()]
        return super().get_permissions()

    @extend_schema(
        request=s.PoolRequestSerializer,
        parameters=[IDEMPOTENCY],
        responses={201: s.PoolCreatedSerializer, 400: PROBLEM, 403: PROBLEM},
    )
    @idempotent
    def post(self, request):
        data = dict(_valid(s.PoolRequestSerializer, request))
        form = PoolForm(_with_initials(PoolForm(), data))
        if not form.is_valid():
            raise exceptions.ValidationError(_errors_of(form))
        try:
            operation = services.create_pool(request.user, form.spec, request=request._request)
        except DoesNotFit as exc:  # the datastores filled up since the form was checked
            raise exceptions.ValidationError({"datastores": [str(exc)]}) from None
        except naming.NamingError as exc:
            raise exceptions.ValidationError({"naming_pattern": [str(exc)]}) from None
        body = {
            "pool": PoolSerializer(operation.pool).data,
            "operation": s.OperationResultSerializer(operation).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)


def _with_initials(form, data: dict) -> dict:
    """The form's data as a page would send it untouched, overlaid with what was given."""
    out = {}
    for name, field in form.fields.items():
        initial = form.get_initial_for_field(field, name)
        if initial is not None:
            out[name] = initial
    out.update({k: v for k, v in data.items() if v is not None})
    return out


class PoolDatastores(APIView):
    """Select or deselect datastores of the pool's hypervisor and set their over-commit, with
    the pool page's rules (at least one stays selected). Datastores not listed stay as they
    are. Deselecting one keeps its desktops there until a rebalance moves them off."""

    permission_classes = [requires("pools.change_pool", action="pool_datastores")]

    @extend_schema(
        request=s.PoolDatastoresRequestSerializer,
        responses={200: s.PoolDatastoreLinkSerializer(many=True), 400: PROBLEM},
    )
    def patch(self, request, pk: int):
        pool = get_object_or_404(Pool.objects.select_related("endpoint"), pk=pk)
        data = _valid(s.PoolDatastoresRequestSerializer, request)
        blank = PoolDatastoresForm(pool=pool)
        known = {ds.pk for ds in blank.datastores}
        unknown = sorted({c["datastore"] for c in data["datastores"]} - known)
        if unknown:
            raise exceptions.ValidationError(
                {"datastores": [f"Not a datastore of {pool.endpoint}: {unknown[:10]}."]}
            )
        given = {}
        for choice in data["datastores"]:
            if "selected" in choice:
                given[f"selected_{choice['datastore']}"] = choice["selected"]
            if "overcommit" in choice:
                given[f"overcommit_{choice['datastore']}"] = choice["overcommit"]
        form = PoolDatastoresForm(_with_initials(blank, given), pool=pool)
        if not form.is_valid():
            raise exceptions.ValidationError(_errors_of(form))
        services.set_pool_datastores(request.user, pool, form.changes(), request=request._request)
        links = pool.pool_datastores.select_related("datastore").order_by("datastore__name")
        return Response(s.PoolDatastoreLinkSerializer(links, many=True).data)


class PoolResize(APIView):
    """Grow or shrink the pool to `size` desktops (the pool page's Resize, the same service).
    Growing places and provisions the new desktops (201, the provision operation); a size
    the datastores cannot take, or the naming pattern cannot name, is 400. Shrinking deletes
    surplus desktops nobody is assigned to or logged on to and no other operation holds,
    keeping their persistent disks (201, the delete operation); when too few are safe to
    remove it is 409 and nothing changes. The pool already that size: 200, operation null."""

    permission_classes = [requires("pools.change_pool", action="resize_pool")]

    @extend_schema(
        request=s.PoolResizeRequestSerializer,
        parameters=[IDEMPOTENCY],
        responses={
            201: s.PoolResizedSerializer,
            200: s.PoolResizedSerializer,
            400: PROBLEM,
            403: PROBLEM,
            409: PROBLEM,
            422: PROBLEM,  # the Idempotency-Key was used with another body
        },
    )
    @idempotent
    def post(self, request, pk: int):
        pool = get_object_or_404(Pool.objects.select_related("endpoint", "image_version"), pk=pk)
        data = _valid(s.PoolResizeRequestSerializer, request)
        form = PoolResizeForm({"size": data["size"], "confirm": True})
        if not form.is_valid():
            raise exceptions.ValidationError(_errors_of(form))
        try:
            operation = services.resize_pool(
                request.user, pool, form.cleaned_data["size"], request=request._request
            )
        except (DoesNotFit, naming.NamingError) as exc:
            raise exceptions.ValidationError({"size": [str(exc)]}) from None
        pool.refresh_from_db()
        body = {
            "pool": PoolSerializer(pool).data,
            "operation": s.OperationResultSerializer(operation).data if operation else None,
        }
        return Response(body, status=status.HTTP_201_CREATED if operation else status.HTTP_200_OK)


# -- operations -------------------------------------------------------------------------------


def _run_permissions() -> list[str]:
    """Every permission that lets its holder run some kind: maintenance, and each kind's
    one-desktop helpdesk permission."""
    own = {k.helpdesk_permission for k in kinds.all_kinds() if k.helpdesk_permission}
    return [MAINTENANCE, *sorted(own)]


class PoolOperations(APIView):
    """Start an operation on the pool, or on the desktops listed, with the options of the
    pool page's form (the same form checks them). A planned kind (recompose, rebalance)
    answers its plan as a draft, to approve or discard; any other is queued or scheduled.

    `dry_run: true` keeps nothing: a planned kind answers the plan it would make, any other
    the desktops it would act on and those it would skip as busy.

    Busy desktops: the pages skip, in a bulk operation, the desktops another live operation
    holds. The API does too for the whole pool, but when the request lists desktops and any
    of them is busy it is refused with 409 naming each and its operation (`busy`), so a
    script never believes it acted on a desktop it did not. (A desktop taken by another
    request between this check and the service's lock is still never held twice: the
    service skips it, and the answer's task for it says "skipped", busy in which operation.)

    Helpdesk may do only what the helpdesk page allows (one desktop, now, a kind with a
    helpdesk permission); the service refuses anything else (403, audited)."""

    # Who may run what is the service's question (it depends on the kind and the desktops);
    # a role that may run nothing at all (auditors) is refused before the request is read.
    permission_classes = [requires(*_run_permissions(), action="start_operation", any_of=True)]

    @extend_schema(
        request=s.OperationRequestSerializer,
        parameters=[IDEMPOTENCY],
        responses={
            201: s.OperationResultSerializer,
            200: s.DryRunSerializer,
            400: PROBLEM,
            403: PROBLEM,
            409: PROBLEM,
            503: PROBLEM,
        },
    )
    @idempotent
    def post(self, request, pk: int):
        pool = get_object_or_404(
            Pool.objects.select_related("endpoint", "image_version__image"), pk=pk
        )
        data = _valid(s.OperationRequestSerializer, request)
        kind = data["kind"]
        form = _operation_form(pool, kind, data, request)
        if not form.is_valid():
            own = {name: f"options.{name}" for name in form.kind_field_names}
            raise exceptions.ValidationError(_errors_of(form, {**RENAMED, **own}))
        actor, django_request = request.user, request._request
        try:
            if data["dry_run"]:
                preview = services.preview_operation(
                    actor, pool, kind, form.desktops, form.options(), form.extra(), django_request
                )
                return Response(_dry_run(preview))
            if form.desktops is not None:
                _refuse_busy(actor, kind, form)
            operation = services.request_operation(
                actor,
                pool,
                kind,
                form.desktops,
                form.options(),
                form.extra(),
                request=django_request,
                submission=form.cleaned_data["submission"],
            )
        except DriverError as exc:
            return _unreachable(exc)
        return Response(s.OperationResultSerializer(operation).data, status=status.HTTP_201_CREATED)


# The API's names for the operation form's fields.
RENAMED = {"desktop": "desktops", "when": "start_at"}


def _operation_form(pool: Pool, kind: str, data: dict, request) -> OperationForm:
    """The pool page's form, filled from the JSON: what the request leaves out takes the
    form's initial value, as a page sent untouched would."""
    form = OperationForm(pool=pool, kind=kind)
    own = data.get("options") or {}
    unknown = sorted(set(own) - set(form.kind_field_names))
    if unknown:
        allowed_names = ", ".join(form.kind_field_names) or "none"
        raise exceptions.ValidationError(
            {"options": [f"Not an option of {kind}: {', '.join(unknown)} ({allowed_names})."]}
        )
    # A checkbox takes any non-empty text as ticked; a script says true or false.
    loose = [
        name
        for name, value in own.items()
        if isinstance(form.fields[name], forms.BooleanField) and not isinstance(value, bool)
    ]
    if loose:
        raise exceptions.ValidationError(
            {f"options.{n}": ["Must be true or false."] for n in loose}
        )
    given = {name: data[name] for name in form.fields if name in data}
    given.update(own)
    desktops = data.get("desktops")
    given["desktop"] = [str(i) for i in desktops] if desktops is not None else []
    # A list given, even empty, is a selection: empty then means none, not the whole pool.
    given["selection"] = desktops is not None
    given["when"] = "later" if data.get("start_at") else "now"
    given["match"] = ""
    given["submission"] = submission_token(request)
    return OperationForm(_with_initials(form, given), pool=pool, kind=kind)


def _refuse_busy(actor, kind: str, form: OperationForm) -> None:
    """409 when a listed desktop is held by another live operation. Asked only of someone
    the service would let through: anyone else gets the service's 403 (audited)."""
    desktops = form.desktops
    needed = services.required_permission(kind, desktops, False, form.options(), form.extra())
    if not allowed(actor, needed, MAINTENANCE):
        return
    held = busy(desktops)
    if held:
        named = [
            {"desktop": d.pk, "name": d.name, "operation": held[d.pk]}
            for d in desktops
            if d.pk in held
        ]
        listed = ", ".join(f"{b['name']} (operation #{b['operation']})" for b in named[:10])
        raise Conflict(f"Already under another operation: {listed}.", busy=named)


def _dry_run(preview: services.Preview) -> dict:
    names = {d.pk: d.name for d in preview.desktops}
    return {
        "dry_run": True,
        "kind": preview.kind,
        "planned": kinds.get(preview.kind).planned,
        "desktops": [
            {"id": d.pk, "name": d.name} for d in preview.desktops if d.pk not in preview.busy
        ],
        "busy": [
            {"desktop": pk, "name": names[pk], "operation": op}
            for pk, op in sorted(preview.busy.items(), key=lambda item: names[item[0]])
        ],
        "plan": preview.plan,
    }


def _control(action: str, run, doc: str, keyed: bool = False, audited_as: str = ""):
    """A POST that approves, discards, pauses, resumes or cancels an operation: the page's
    permission first, then the service (which checks again and audits); 409 when the
    operation's state refuses it."""

    def post(self, request, pk: int):
        operation = get_object_or_404(Operation, pk=pk)
        try:
            result = run(request.user, operation, request=request._request)
        except DriverError as exc:
            return _unreachable(exc)
        operation = result if isinstance(result, Operation) else operation
        operation.refresh_from_db()  # a cancel with nothing in flight ends at once
        return Response(s.OperationResultSerializer(operation).data)

    if keyed:
        post = idempotent(post)
    post = extend_schema(
        request=None,
        parameters=[IDEMPOTENCY] if keyed else None,
        responses={200: s.OperationResultSerializer, 403: PROBLEM, 404: PROBLEM, 409: PROBLEM},
    )(post)
    permission = requires(MAINTENANCE, action=audited_as or f"{action}_operation")
    name = f"Operation{action.capitalize()}"
    return type(
        name, (APIView,), {"__doc__": doc, "permission_classes": [permission], "post": post}
    )


OperationApprove = _control(
    "approve",
    services.approve,
    "Run a plan awaiting approval, exactly as it was made (desktops busy by now are skipped).",
    keyed=True,
    audited_as="approve_plan",
)
OperationDiscard = _control(
    "discard",
    services.discard,
    "Drop a plan awaiting approval: nothing was or will be changed.",
    audited_as="discard_plan",
)
OperationPause = _control(
    "pause", services.pause, "Desktops in flight finish; no new one starts until resumed."
)
OperationResume = _control("resume", services.resume, "Carry on with a paused operation.")
OperationCancel = _control(
    "cancel",
    services.cancel,
    "Desktops not reached yet stay as they were (marked task halted); those in flight finish.",
)
