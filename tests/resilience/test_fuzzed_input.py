"""Hypothesis-generated hostile input on every route of the site, as every role: never a 500
(issue 9, item 2, and the last line of "The suite that keeps this true").

Every URL pattern the resolver knows is driven, so a new route is covered without a change
here; a portal route taking an id or a word this file does not know fails
test_every_route_can_be_built, and one it cannot build a path to fails the fuzzing test.

Each route is first probed (a request per role and method, with the pool's own objects in
the path), recording every name the view reads from the query or the form and every field
of the forms it binds, and which roles it serves rather than turns away (403, 405, sign-in
page). Hypothesis then sends, as administrator, helpdesk, auditor and anonymous:

- for each role and method the route serves, 5 requests and 2 more per name it reads (at
  most 20), a third of each kind: "valid" (every name with a value its form field takes:
  its choices, bounds, querysets, dates up to 9999), "one-off" (one or two of them hostile
  or missing), "hostile" (any of them hostile, any path); a few for those it turns away;
- hostile values: NUL bytes, 10,000-character and non-BMP strings, numbers past the
  database's integers, huge and negative ones, other pools' and unknown ids, malformed and
  extreme dates, one character too many, broken percent-encoding, random extra names;
- path ids of the first pool's objects, of the other pool's, unknown, zero and huge (the
  int converter takes no sign); random words where a path takes a word;
- HX-Request, HX-Target, HX-Current-URL, HX-Trigger and HX-Boosted headers with junk.

A POST that succeeds (302) is followed by reading back what it changed: the page it
redirects to, and the audit log page.

Django's admin and django-rq answer staff only: their routes are driven by the same roles
(turned away, but for the few open to anyone signed in) and by a superuser, with 2 requests
per method; a 500 the superuser gets from their own code alone (no frame of the portal's)
is their bug, reported as a warning, not a failure.

Real data: two pools with their desktops provisioned on the simulator, a draft plan, a
scheduled and a paused operation, a second hypervisor endpoint with an image of its own.
The portal runs in the farthest time zone west of UTC. Each request runs in a transaction
rolled back after it, so every example starts from the same state and replays, and nothing
a POST starts is enqueued (jobs go on the queue after commit only; the queue is checked
empty after each request). DEBUG is off and the client returns the 500 instead of raising:
the assertion is on the status, with the exception's traceback in the message. Seeds are
fixed per route, role, method and kind of request; FUZZ_SCALE=10 runs ten times as many.
"""

from __future__ import annotations

import collections
import itertools
import operator
import os
import re
import time
import traceback
import uuid
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote, unquote, urlencode

import pytest
from django import forms
from django.apps import apps
from django.contrib.auth.models import User
from django.db import transaction
from django.http import QueryDict
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.converters import (
    IntConverter,
    PathConverter,
    SlugConverter,
    StringConverter,
    UUIDConverter,
)
from django.urls.exceptions import Resolver404
from django.urls.resolvers import _PATH_PARAMETER_COMPONENT_RE, RegexPattern, RoutePattern
from django.utils import timezone
from hypothesis import HealthCheck, Phase, find, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from composer import kinds, services
from composer.models import Operation, Webhook
from composer.queue import queue
from pools.models import BaseImage, Desktop, HypervisorEndpoint, Pool, Replica
from pools.states import DesktopState
from portal import desktop_filters, helpdesk
from portal.models import ApiToken
from portal.roles import OUR_APPS

pytestmark = pytest.mark.django_db(transaction=True)

ROLES = ["admin", "helpdesk", "auditor", "anonymous"]
# Django's admin and django-rq answer staff only: they are also driven as a superuser.
THIRD_PARTY = {"admin", "django_rq"}
SUPERUSER = "superuser"

# Examples per route, role and method the route serves: EXAMPLES, and EXAMPLES_PER_INPUT
# more for each parameter or form field it reads, up to MAX_EXAMPLES. Django's admin and
# django-rq (many routes of the same generic code) get THIRD_PARTY_EXAMPLES each.
EXAMPLES = 5
EXAMPLES_PER_INPUT = 2
MAX_EXAMPLES = 20
THIRD_PARTY_EXAMPLES = 2
# FUZZ_SCALE=10 multiplies them all, for a deeper run by hand.
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
# For each role and method a portal route turns away (403, 405, the sign-in page), at least
# 2; for all of them together on a route of Django's admin or django-rq.
TURNED_AWAY_EXAMPLES = 1

SETTINGS = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)

# The portal's routes that take an id: what it is the id of (a key of World.ids).
PATH_OBJECTS = {
    ("helpdesk_confirm", "pk"): "desktop",
    ("pools:detail", "pk"): "pool",
    ("pools:live", "pk"): "pool",
    ("pools:operate", "pk"): "pool",
    ("pools:pool_datastores", "pk"): "pool",
    ("pools:resize", "pk"): "pool",
    ("api:pool-resize", "pk"): "pool",
    ("pools:desktop", "pk"): "desktop",
    ("pools:image_version_add", "pk"): "image",
    ("pools:hypervisor_test", "pk"): "endpoint",
    ("pools:hypervisor_sync", "pk"): "endpoint",
    ("pools:hypervisor_agent_token", "pk"): "endpoint",
    ("composer:operation", "pk"): "operation",
    ("composer:plan", "pk"): "operation",
    ("composer:approve", "pk"): "operation",
    ("composer:discard", "pk"): "operation",
    ("composer:cancel", "pk"): "operation",
    ("composer:pause", "pk"): "operation",
    ("composer:resume", "pk"): "operation",
    ("token_revoke", "pk"): "token",
    ("api:token", "pk"): "token",
    ("api:pool", "pk"): "pool",
    ("api:image-versions-create", "pk"): "image",
    ("api:pool-datastores", "pk"): "pool",
    ("api:pool-operations", "pk"): "pool",
    ("api:approve", "pk"): "operation",
    ("api:discard", "pk"): "operation",
    ("api:pause", "pk"): "operation",
    ("api:resume", "pk"): "operation",
    ("api:cancel", "pk"): "operation",
    ("api:webhook", "pk"): "webhook",
    ("api:hypervisor", "pk"): "endpoint",
    ("api:datastore", "pk"): "datastore",
    ("api:image", "pk"): "image",
    ("api:image_version", "pk"): "version",
    ("api:replica", "pk"): "replica",
    ("api:desktop", "pk"): "desktop",
    ("api:desktop_history", "pk"): "desktop",
    ("api:operation", "pk"): "operation",
    ("api:operation_desktops", "pk"): "operation",
    ("api:webhook_deliveries", "pk"): "webhook",
    ("webhooks:detail", "pk"): "webhook",
    ("webhooks:rotate", "pk"): "webhook",
    ("webhooks:test", "pk"): "webhook",
    ("webhooks:delete", "pk"): "webhook",
}
# The portal's routes that take a word: the words it knows (others are fuzzed too).
PATH_WORDS = {
    ("helpdesk_confirm", "action"): list(helpdesk.actions()),
    ("pools:operate", "kind"): [name for name, _ in kinds.choices()],
}


class CannotBuild(Exception):
    pass


# -- the routes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str  # "pools:detail"; the pattern's text when it has no name
    namespace: str  # "" for the portal's top-level pages
    pieces: tuple  # the patterns from the root down to the leaf's
    pattern: URLPattern

    @property
    def third_party(self) -> bool:
        return self.namespace.split(":")[0] in THIRD_PARTY

    @property
    def text(self) -> str:
        return "".join(str(piece) for piece in self.pieces)

    def __str__(self):
        return f"{self.name} (/{self.text})" if self.name != self.text else f"/{self.text}"


def all_routes() -> list[Route]:
    def walk(patterns, pieces, namespace):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                inner = ":".join(n for n in (namespace, entry.namespace) if n)
                yield from walk(entry.url_patterns, (*pieces, entry.pattern), inner)
            elif isinstance(entry, URLPattern):
                chain = (*pieces, entry.pattern)
                text = "".join(str(p) for p in chain)
                name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
                yield Route(name or text, namespace, chain, entry)
            else:
                raise CannotBuild(f"unknown URL entry {entry!r}")

    return list(walk(get_resolver().url_patterns, (), ""))


ROUTES = all_routes()


def admin_model(route: Route):
    """The model of a Django admin route (admin/<app>/<model>/...), or None."""
    found = re.match(r"admin/(\w+)/(\w+)/", route.text)
    if not found or not route.namespace.startswith("admin"):
        return None
    try:
        return apps.get_model(found[1], found[2])
    except LookupError:
        return None


def resolves_to(path: str, route: Route) -> bool:
    try:
        match = resolve(unquote(path.partition("?")[0]))
    except Resolver404:
        return False
    return match.tried[-1][-1] is route.pattern


# -- the data -------------------------------------------------------------------------------


@dataclass
class World:
    users: dict
    # kind -> {"own": [...], "other": [...]}: the first pool's objects and the others'.
    ids: dict
    unknown: dict  # kind -> an id no object has
    words: dict = field(default_factory=dict)  # parameter name -> values worth trying
    all_ids: list = field(default_factory=list)
    junk: object = None  # the hostile values' strategy, made once


def _ids(queryset):
    return sorted(queryset.values_list("pk", flat=True))


@pytest.fixture
def world(users, lab, make_pool, run_jobs, settings):
    settings.DEBUG = False
    # The farthest time zone west of UTC: a date late in 9999 typed there is past the end of
    # the calendar in UTC, where the database keeps it.
    settings.TIME_ZONE = "Etc/GMT+12"
    own = make_pool("Fuzz", "FZ-{n}", 4)
    other = make_pool("Other", "OT-{n}", 2)
    run_jobs()  # provisioned: the desktops are available, as in real use
    desktops = list(own.desktops.order_by("name"))
    assert {d.state for d in desktops} == {DesktopState.AVAILABLE}
    Desktop.objects.filter(pk=desktops[0].pk).update(assigned_user="alice")
    Desktop.objects.filter(pk=desktops[1].pk).update(assigned_user="bob", session_user="bob")
    admin = users["admin"]
    # What the operation routes act on: a plan awaiting approval, a scheduled refresh, a
    # paused power operation (on the other pool), besides the finished provisions.
    services.plan_operation(admin, own, "rebalance")
    services.start_operation(
        admin,
        own,
        "refresh",
        [desktops[3]],
        services.Options(start_at=timezone.now() + timedelta(days=365)),
    )
    paused = services.start_operation(
        admin, other, "power", list(other.desktops.all()), extra={"action": "restart"}
    )
    Operation.objects.filter(pk=paused.pk).update(status=Operation.Status.PAUSED)
    queue().empty()
    # A second endpoint with an image of its own: ids that exist but belong elsewhere.
    elsewhere = HypervisorEndpoint.objects.create(name="sim-elsewhere")
    other_image = BaseImage.objects.create(endpoint=elsewhere, name="Other", parent_vm="none")
    superuser = User.objects.create_superuser("root", password="pw-root")
    # API tokens: the administrator's own, and the helpdesk's (someone else's to the others).
    own_token, _ = ApiToken.issue(admin, "fuzz")
    other_token, _ = ApiToken.issue(users["helpdesk"], "desk")
    hooks = [
        Webhook.objects.create(name=f"Fuzz hook {i}", url=f"https://hooks.example.com/{i}")
        for i in (1, 2)
    ]

    replica, _ = Replica.objects.get_or_create(
        image_version=lab.v1, datastore=lab.ds["ds-a"], defaults={"name": "fuzz-replica"}
    )
    ids = {
        "pool": {"own": [own.pk], "other": [other.pk]},
        "desktop": {"own": [d.pk for d in desktops], "other": _ids(other.desktops)},
        "operation": {
            "own": _ids(Operation.objects.filter(pool=own)),
            "other": _ids(Operation.objects.exclude(pool=own)),
        },
        "image": {"own": [lab.v1.image_id], "other": [other_image.pk]},
        "endpoint": {"own": [lab.endpoint.pk], "other": [elsewhere.pk]},
        "datastore": {"own": [ds.pk for ds in lab.ds.values()], "other": []},
        "version": {"own": [lab.v1.pk, lab.v2.pk], "other": []},
        "token": {"own": [own_token.pk], "other": [other_token.pk]},
        "webhook": {"own": [hooks[0].pk], "other": [hooks[1].pk]},
        "replica": {"own": [replica.pk], "other": []},
    }
    models = {
        "pool": Pool,
        "desktop": Desktop,
        "operation": Operation,
        "image": BaseImage,
        "endpoint": HypervisorEndpoint,
        "token": ApiToken,
        "webhook": Webhook,
    }
    unknown = {kind: (max(_ids(model.objects), default=0) + 1000) for kind, model in models.items()}
    unknown["datastore"] = unknown["version"] = unknown["replica"] = 10_000
    usernames = [u.username for u in users.values()] + ["root", "alice", "bob"]
    sorts = list(desktop_filters.SORTS)
    words = {
        "desktop": [str(pk) for pk in ids["desktop"]["own"]],
        "q": ["FZ", "fz-1", "OT-1", "alice", "bob", "e"],
        "user": ["alice", "bob", "carol"],
        "username": usernames,
        "password": ["pw-ada", "pw-hal", "pw-aud", "pw-root", "wrong"],
        "who": usernames,
        "by": usernames,
        "pool": ["Fuzz", "Other", "Gone"],
        "target": ["FZ-1", "Fuzz", ""],
        "snapshot": ["v1", "v2", "v3", "gold"],
        "page": ["1", "2", "last", "0", "-1", "99999999999999999999", "1.5"],
        "sort": sorts + [f"-{s}" for s in sorts],
        "state": list(DesktopState.values),
        "flag": list(desktop_filters.FLAGS),
        "status": list(Operation.Status.values),
        "kind": [name for name, _ in kinds.choices()],
        "action": ["start", "shutdown", "restart", "login", "export_audit"],
        "datastore": [str(pk) for pk in ids["datastore"]["own"]],
        "version": [str(pk) for pk in ids["version"]["own"]],
        "selection": ["1", "on", "True", ""],
        "when": ["now", "later"],
        "next": ["/pools/", "//evil.example/", "http://testserver/audit/", "javascript:1"],
    }
    all_ids = sorted({pk for kinds in ids.values() for side in kinds.values() for pk in side})
    return World(
        users={**users, SUPERUSER: superuser},
        ids=ids,
        unknown=unknown,
        words=words,
        all_ids=all_ids,
    )


# -- values ---------------------------------------------------------------------------------

TEXT = st.characters(codec="utf-8")  # any code point but surrogates: NUL and controls too
PRINTABLE = st.characters(codec="utf-8", exclude_characters="\x00")
EDGE_NUMBERS = [
    "0",
    "-0",
    "-1",
    "1",
    "2147483647",
    "2147483648",
    "-2147483649",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    str(10**30),
    "-" + str(10**30),
    str(10**400),
    "1e308",
    "1e309",
    "-1e309",
    "NaN",
    "inf",
    "-Infinity",
    "0.5",
    "1,000",
    "1_000",
    " 7 ",
    "0x1F",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: int() takes it
    "\uff11\uff12",  # FULLWIDTH 12
    "+5",
    "--1",
]
EDGE_DATES = [
    "2024-13-01",
    "2024-02-30",
    "2024-00-00",
    "0000-00-00",
    "0001-01-01",
    "0001-01-01T00:00",
    "9999-12-31",
    "9999-12-31T23:59",
    "10000-01-01",
    "-2024-01-01",
    "2024-01-01T25:61",
    "2024-01-01T23:59:60",
    "2099-01-01T10:00",
    "2099-01-01T10:00:00+14:00",
    "2099-01-01T10:00:00-99:00",
    "2099-01-01T10:00Z",
    "1900-01-01",
    "1899-12-31",
    "9998-12-31",
    "2024-1-1",
    "01/02/2024",
    "1970-01-01T00:00",
    "2038-01-19T03:14:08",
    "2024-W01",
    "yesterday",
    "T",
]
EDGE_TEXT = [
    "",
    " ",
    "\t",
    "null",
    "None",
    "true",
    "[]",
    "{}",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR '1'='1",
    "\\",
    "%",
    "%00",
    "%s",
    "{n}",
    "{n:fixed=99}",
    "{0}",
    "\u202e",
    "\ufeff",
    "\r\n",
    "a\x00b",
]
LONG = st.builds(
    operator.mul,
    st.sampled_from(["a", "\xe9", "\U0001f600", "\U00010348", "9", " ", "%", "<", "\u0663"]),
    st.sampled_from([65, 101, 151, 256, 501, 10_000]),
)
NON_BMP = st.text(st.characters(min_codepoint=0x10000, codec="utf-8"), min_size=1, max_size=12)


def weighted(*choices):
    """One of the strategies, picked with the given weights: weighted((3, a), (1, b))."""
    choices = [(w, s) for w, s in choices if s is not None]
    total = sum(w for w, _ in choices)
    table = [s for w, s in choices for _ in range(w)]
    return st.integers(0, total - 1).flatmap(lambda i: table[i])


def junk(world: World):
    if world.junk is None:
        world.junk = _junk(world)
    return world.junk


def _junk(world: World):
    return weighted(
        (4, st.text(TEXT, max_size=30)),
        (2, LONG),
        (1, NON_BMP),
        (2, st.integers(-(2**80), 2**80).map(str)),
        (2, st.sampled_from(EDGE_NUMBERS)),
        (2, st.sampled_from(EDGE_DATES)),
        (2, st.sampled_from(EDGE_TEXT)),
        (2, st.sampled_from([str(pk) for pk in world.all_ids] + [str(world.unknown["pool"])])),
    )


def _choices(field) -> list[str]:
    keys = []
    for key, label in field.choices:
        if isinstance(label, list | tuple):
            keys += [str(k) for k, _ in label]
        else:
            keys.append(str(getattr(key, "value", key)))
    return keys


def valid(field, world: World):
    """Values a form field takes, as strings or lists (None: no way to tell)."""
    if isinstance(field, forms.BooleanField):
        return st.sampled_from(["on", "1", "true", "false", ""])
    if isinstance(field, forms.ModelMultipleChoiceField):
        pks = [str(pk) for pk in field.queryset.values_list("pk", flat=True)]
        return st.lists(st.sampled_from(pks), min_size=1, unique=True) if pks else None
    if isinstance(field, forms.ModelChoiceField):
        pks = [str(pk) for pk in field.queryset.values_list("pk", flat=True)]
        return st.sampled_from(pks) if pks else None
    if isinstance(field, forms.MultipleChoiceField):
        keys = _choices(field)
        return st.lists(st.sampled_from(keys), min_size=1, unique=True) if keys else None
    if isinstance(field, forms.ChoiceField):
        keys = _choices(field)
        return st.sampled_from(keys) if keys else None
    if isinstance(field, forms.IntegerField):
        return st.integers(field.min_value, field.max_value).map(str)
    if isinstance(field, forms.DateTimeField):  # up to the last minute Python has
        moments = st.datetimes(min_value=datetime(2000, 1, 1))
        return st.one_of(  # the calendar's ends, as often as the rest
            st.sampled_from(["9999-12-31T23:59", "9999-12-31 23:59:59", "0001-01-01T00:00"]),
            moments.map(lambda m: m.strftime("%Y-%m-%dT%H:%M")),
        )
    if isinstance(field, forms.DateField):
        return st.one_of(
            st.sampled_from(["9999-12-31", "0001-01-01"]), st.dates().map(lambda d: d.isoformat())
        )
    if isinstance(field, forms.CharField):
        longest = min(field.max_length or 40, 40)
        exact = "x" * field.max_length if field.max_length else None
        return weighted(
            (4, st.text(PRINTABLE, max_size=longest)),
            (1, st.just(exact) if exact else None),
        )
    return None


# Just past what a database integer holds (first: the simplest example hypothesis makes).
BEYOND = [str(2**63), str(-(2**63) - 1), str(10**30), str(2**31), str(2**63 - 1)]


def numbers(world: World):
    """Numbers where an id or a count goes: past the database's integers, other edges, any
    size, other rows' ids."""
    return weighted(
        (2, st.sampled_from(BEYOND)),
        (1, st.sampled_from(EDGE_NUMBERS)),
        (1, st.integers(-(2**70), 2**70).map(str)),
        (1, st.sampled_from([str(pk) for pk in world.all_ids])),
    )


def nearly(field, world: World):
    """Values just outside what a form field takes: its bounds passed, other rows' ids,
    numbers beyond any id, dates beyond the calendar, one character too many."""
    if isinstance(field, forms.IntegerField):
        edges = [
            str(bound + step)
            for bound, step in ((field.min_value, -1), (field.max_value, 1))
            if bound is not None
        ]
        return st.one_of(st.sampled_from(edges), numbers(world)) if edges else numbers(world)
    if isinstance(field, forms.ModelMultipleChoiceField):
        return st.lists(numbers(world), min_size=1, max_size=4)
    if isinstance(field, forms.ModelChoiceField):
        return numbers(world)
    if isinstance(field, forms.DateField | forms.DateTimeField):
        return st.sampled_from(EDGE_DATES)
    if isinstance(field, forms.CharField) and field.max_length:
        return st.just("y" * (field.max_length + 1))
    return None


@dataclass
class Inputs:
    """What a route reads, found by probing it: query names, form names and form fields."""

    get_names: set = field(default_factory=set)
    post_names: set = field(default_factory=set)
    fields: dict = field(default_factory=dict)  # name (with prefix) -> form field


@contextmanager
def recording(inputs: Inputs, method: str):
    """Record every name read from a QueryDict and every field of a bound form."""
    names = inputs.get_names if method == "GET" else inputs.post_names
    spied = {}

    def spy(original):
        def read(self, key, *args, **kwargs):
            if isinstance(key, str):
                names.add(key)
            return original(self, key, *args, **kwargs)

        return read

    for attr in ("get", "getlist", "__getitem__", "__contains__"):
        spied[attr] = spy(getattr(QueryDict, attr))
        setattr(QueryDict, attr, spied[attr])
    full_clean = forms.BaseForm.full_clean

    def record_fields(form):
        if form.is_bound:
            for name, bound_field in form.fields.items():
                inputs.fields[form.add_prefix(name)] = bound_field
        return full_clean(form)

    forms.BaseForm.full_clean = record_fields
    try:
        yield
    finally:
        forms.BaseForm.full_clean = full_clean
        for attr in spied:
            delattr(QueryDict, attr)


PROBE = "__probe__"


def value_strategy(name: str, inputs: Inputs, world: World):
    """(valid values, hostile values) of a parameter or form field: what its form field
    takes, else the words worth trying for that name. Hostile: values just outside what the
    field takes (numbers where the words are numbers), those words where the field says
    what is valid, or junk."""
    field_ = inputs.fields.get(name)
    typed = valid(field_, world) if field_ is not None else None
    words = world.words.get(name, [])
    hints = st.sampled_from(words) if words else None
    close = nearly(field_, world) if field_ is not None else None
    if close is None and any(word.isdigit() for word in words):
        close = numbers(world)
    if name == "desktop":  # the selected desktops: some of the pool's, or others too
        ids = world.ids["desktop"]
        typed = st.lists(st.sampled_from(ids["own"]).map(str), min_size=1, max_size=4)
        others = st.sampled_from([*ids["own"], *ids["other"], world.unknown["desktop"]])
        close = st.lists(st.one_of(others.map(str), numbers(world)), min_size=1, max_size=5)
    elif name == "submission":
        typed = st.uuids().map(lambda u: u.hex)
    if typed is None:
        typed, hints = hints, None
    hostile = weighted((3, close), (1, hints), (2, junk(world)))
    return (typed if typed is not None else hostile), hostile


NAME = weighted(
    (3, st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12)),
    (1, st.text(TEXT, min_size=1, max_size=20)),
    (1, LONG),
)


# How much of a request is hostile: "valid" fills every parameter and field the route reads
# with a value it takes; "one-off" spoils one or two of them (a hostile value, or none);
# "hostile" also takes any path (other pools' ids, unknown and huge ids, random words) and
# gives each parameter a valid value, a hostile one or none. Random names come with all.
MODES = {"valid": 2, "one-off": 2, "hostile": 2}  # the share of a route's examples


@st.composite
def parameters(draw, specs: dict, world: World, mode: str):
    """(name, value) pairs for one mode. specs: name -> (valid, hostile)."""
    names = sorted(specs)
    spoiled = set()
    if mode == "one-off" and names:
        spoiled = draw(st.sets(st.sampled_from(names), min_size=1, max_size=2))
    pairs = []
    for name in names:
        good, hostile = specs[name]
        if mode == "hostile":
            how = draw(st.sampled_from(["valid", "hostile", "hostile", "absent"]))
        elif name in spoiled:
            how = draw(st.sampled_from(["hostile", "hostile", "absent"]))
        else:
            how = "valid"
        if how == "absent":
            continue
        value = draw(good if how == "valid" else st.one_of(hostile, st.lists(hostile, max_size=3)))
        for one in value if isinstance(value, list) else [value]:
            pairs.append((name, one))
    extra = draw(st.lists(st.tuples(NAME, junk(world)), max_size=3))
    return pairs + extra


RAW_QUERY = st.sampled_from(
    ["", "", "", "%", "%ZZ", "%FF%FE", "&&", "=&=", "a=%E2%82", "q=%C0%AF", ";;", "+" * 50]
)
HEADER_TEXT = weighted(
    (4, st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=40)),
    (1, st.builds(operator.mul, st.sampled_from(["a", "\xff", " "]), st.just(10_000))),
)


def headers_strategy(path_hint: str):
    url = st.one_of(
        st.just(f"http://testserver{path_hint}"),
        st.just("http://[::1"),
        st.just("::::"),
        st.just("http://evil.example/pools/?q=%00"),
        HEADER_TEXT,
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "HX-Request": st.one_of(st.just("true"), st.just("false"), HEADER_TEXT),
            "HX-Target": st.one_of(st.just("live"), st.just("results"), HEADER_TEXT),
            "HX-Current-URL": url,
            "HX-Trigger": HEADER_TEXT,
            "HX-Boosted": st.one_of(st.just("true"), HEADER_TEXT),
            "HX-History-Restore-Request": st.just("true"),
        },
    )


# -- building paths -------------------------------------------------------------------------

PATH_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=30)
HUGE_IDS = [0, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 10**30]
CONVERTERS = (IntConverter, UUIDConverter, SlugConverter, PathConverter, StringConverter)


def _split(route_pattern: RoutePattern):
    """The literal text and (name, converter) parameters of a path() pattern, in order."""
    text, out, at = route_pattern._route, [], 0
    for found in _PATH_PARAMETER_COMPONENT_RE.finditer(text):
        out.append(text[at : found.start()])
        name = found["parameter"]
        out.append((name, route_pattern.converters[name]))
        at = found.end()
    out.append(text[at:])
    return out


def unbuildable(route: Route) -> str | None:
    """Why this file cannot build the route's paths, or None: an unknown kind of pattern or
    converter, or a portal route whose ids or words this file does not know."""
    for piece in route.pieces:
        if isinstance(piece, RegexPattern):
            continue
        if not isinstance(piece, RoutePattern):
            return f"{route}: no way to build a {type(piece).__name__}"
        for part in _split(piece):
            if isinstance(part, str):
                continue
            name, converter = part
            if not isinstance(converter, CONVERTERS):
                return f"{route}: no values for the converter {type(converter).__name__}"
            if route.third_party:
                continue
            if isinstance(converter, IntConverter) and (route.name, name) not in PATH_OBJECTS:
                return f"{route}: what is <int:{name}> the id of? Add it to PATH_OBJECTS."
            if isinstance(converter, StringConverter) and (route.name, name) not in PATH_WORDS:
                return f"{route}: what words does <{name}> take? Add it to PATH_WORDS."
    return None


def _stored_ids(route: Route) -> list[str]:
    model = admin_model(route)
    if model is None or not model._meta.managed:
        return []
    return [str(pk) for pk in model.objects.order_by("pk").values_list("pk", flat=True)]


def param_values(route: Route, name: str, converter, world: World) -> list:
    """The values a parameter takes in a well-formed request: the pool's own objects, the
    words the route knows."""
    key = (route.name, name)
    if isinstance(converter, IntConverter):
        return [0] if route.third_party else world.ids[PATH_OBJECTS[key]]["own"]
    if isinstance(converter, UUIDConverter):
        return [uuid.UUID(int=1)]
    if isinstance(converter, SlugConverter):
        return ["x"]
    if route.third_party:
        return _stored_ids(route)[:3] or ["1"]
    return PATH_WORDS[key]


def param_strategy(route: Route, name: str, converter, world: World):
    """Those values, the other pool's ids, unknown and huge ids, or random words."""
    known = st.sampled_from(param_values(route, name, converter, world))
    if isinstance(converter, IntConverter):
        if route.third_party:
            return st.sampled_from([0, 1, 2, *HUGE_IDS])
        kind = PATH_OBJECTS[(route.name, name)]
        other = world.ids[kind]["other"]
        return weighted(
            (3, known),
            (3, st.sampled_from(other) if other else None),
            (1, st.just(world.unknown[kind])),
            (1, st.sampled_from(HUGE_IDS)),
            (1, st.integers(0, 2**70)),
        )
    if isinstance(converter, UUIDConverter):
        return st.uuids()
    if isinstance(converter, SlugConverter):
        return st.from_regex(r"[-a-zA-Z0-9_]+", fullmatch=True)
    if isinstance(converter, PathConverter):
        any_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)
    else:
        any_text = PATH_TEXT
    return weighted((2, known), (2, any_text), (1, LONG.filter(no_slash)))


def no_slash(text: str) -> bool:
    return "/" not in text


def _path_parts(route: Route, param):
    """Per piece of the route, a strategy for its text; param(name, converter) gives the
    strategy of each parameter's value."""
    parts = []
    for piece in route.pieces:
        if isinstance(piece, RoutePattern):
            for part in _split(piece):
                if isinstance(part, str):
                    parts.append(st.just(part))
                else:
                    name, converter = part
                    values = param(name, converter)
                    parts.append(values.map(lambda v, c=converter: quote(c.to_url(v), safe="")))
        else:
            regex = piece._regex.removeprefix("^")
            parts.append(st.from_regex(regex, fullmatch=True).map(lambda t: quote(t, safe="/")))
    return parts


def path_strategy(route: Route, world: World, hostile: bool):
    """Paths to the pool's own objects with the words the route knows; hostile: any of the
    ids and words above."""
    if hostile:
        parts = _path_parts(route, lambda n, c: param_strategy(route, n, c, world))
    else:
        parts = _path_parts(route, lambda n, c: st.sampled_from(param_values(route, n, c, world)))
    return st.tuples(*parts).map(lambda texts: "/" + "".join(texts))


def shadowed(route: Route) -> bool:
    """Another route before it has the same pattern: no request ever reaches it (django-rq's
    admin entry does this to its own changelist)."""
    earlier = ROUTES[: ROUTES.index(route)]
    return any(other.text == route.text for other in earlier)


def canonical_paths(route: Route, world: World) -> list[str]:
    """Paths of this route with one of the pool's own objects and each word it knows, all
    of which resolve to it ([] for a route no request reaches)."""
    if shadowed(route):
        return []
    problem = unbuildable(route)
    if problem:
        raise CannotBuild(problem)
    if all(isinstance(piece, RoutePattern) for piece in route.pieces):
        choices = []
        for piece in route.pieces:
            for part in _split(piece):
                if isinstance(part, str):
                    choices.append([part])
                else:
                    name, converter = part
                    values = param_values(route, name, converter, world)
                    if isinstance(converter, IntConverter):
                        values = values[:1]  # one object is enough; every word is not
                    choices.append([quote(converter.to_url(v), safe="") for v in values])
        paths = ["/" + "".join(texts) for texts in itertools.product(*choices)]
        found = [path for path in paths if resolves_to(path, route)]
    else:  # a regex: let hypothesis find a match that reaches this route
        parts = _path_parts(route, lambda n, c: st.sampled_from(param_values(route, n, c, world)))
        strategy = st.tuples(*parts).map(lambda texts: "/" + "".join(texts))
        try:
            found = [
                find(
                    strategy,
                    lambda path: resolves_to(path, route),
                    settings=hypothesis_settings(
                        max_examples=500,
                        database=None,
                        derandomize=True,
                        phases=[Phase.generate],
                        suppress_health_check=list(HealthCheck),
                    ),
                )
            ]
        except NoSuchExample:
            found = []
    if not found:
        raise CannotBuild(f"{route}: no path built from it resolves to it")
    return found


# -- sending --------------------------------------------------------------------------------


@dataclass
class Request:
    role: str
    method: str
    path: str
    query: list
    raw_query: str
    body: list
    encoding: str
    headers: dict

    def url(self) -> str:
        query = urlencode(self.query, doseq=True)
        if self.raw_query:
            query = f"{query}&{self.raw_query}" if query else self.raw_query
        return self.path + (f"?{query}" if query else "")

    def describe(self) -> str:
        def short(value):
            text = repr(value)
            return text if len(text) < 300 else text[:300] + f"... ({len(text)} chars)"

        return (
            f"{self.role} {self.method} {short(self.url())}\n"
            f"  body ({self.encoding}): {short(self.body)}\n  headers: {short(self.headers)}"
        )


def request_strategy(route: Route, inputs: Inputs, world: World, cells: list, mode: str):
    """Requests to the route from one of these (role, method) cells, hostile as the mode
    says (see MODES)."""
    get_names = inputs.get_names - {PROBE}
    post_names = (inputs.post_names | set(inputs.fields)) - {PROBE}
    specs = {name: value_strategy(name, inputs, world) for name in get_names | post_names}
    return st.sampled_from(cells).flatmap(
        lambda cell: st.builds(
            Request,
            role=st.just(cell[0]),
            method=st.just(cell[1]),
            path=path_strategy(route, world, hostile=mode == "hostile"),
            query=parameters({name: specs[name] for name in get_names}, world, mode),
            raw_query=RAW_QUERY if mode == "hostile" else st.just(""),
            body=parameters({name: specs[name] for name in post_names}, world, mode)
            if cell[1] == "POST"
            else st.just([]),
            encoding=st.sampled_from(["urlencoded"] * 4 + ["multipart", "text"])
            if mode == "hostile"
            else st.just("urlencoded"),
            headers=headers_strategy("/" + route.text),
        )
    )


class Clients:
    """A client per role, signed in once; each request starts from that session's cookies
    (a sign-out or sign-in in one example does not carry over to the next)."""

    def __init__(self, world: World, roles: list[str]):
        self.clients, self.cookies = {}, {}
        for role in roles:
            client = Client(raise_request_exception=False)
            if role != "anonymous":
                client.force_login(world.users[role])
            self.clients[role] = client
            self.cookies[role] = {name: m.value for name, m in client.cookies.items()}

    def after_post(self, role: str, location: str, route: Route, judge: Judge) -> str | None:
        """What a successful POST changed, read back before it is rolled back: the page it
        sends the browser to, and the audit log that recorded it (the portal's routes)."""
        reads = [(role, location)] if location.startswith("/") else []
        if not route.third_party:
            reads.append(("admin", "/audit/"))
        for reader, url in reads:
            if reader != role:
                self.restore(reader)
            response = self.clients[reader].get(url)
            problem = judge.problem(response, reader, route)
            if problem:
                return f"then {response.status_code} for {reader} GET {url!r}:\n{problem}"
        return None

    def restore(self, role: str):
        self.clients[role].cookies = SimpleCookie(self.cookies[role])

    def send(self, request: Request):
        client = self.clients[request.role]
        self.restore(request.role)
        url, headers = request.url(), request.headers
        if request.method == "GET":
            return client.get(url, headers=headers)
        if request.encoding == "multipart" and all(
            re.fullmatch(r"[\w-]+", name) for name, _ in request.body
        ):
            data = {}
            for name, value in request.body:
                data.setdefault(name, []).append(value)
            return client.post(url, data, headers=headers)
        if request.encoding == "text":
            body = "\n".join(f"{k}: {v}" for k, v in request.body)
            return client.post(url, body, content_type="text/plain", headers=headers)
        return client.post(
            url,
            urlencode(request.body, doseq=True),
            content_type="application/x-www-form-urlencoded",
            headers=headers,
        )


# The portal's own code: a 500 raised through it always fails the test.
OURS = tuple(str(Path(__file__).resolve().parents[2] / app) + "/" for app in OUR_APPS)


def problem_with(response) -> str | None:
    """Why this response is not acceptable, or None."""
    try:
        if response.streaming:
            b"".join(response.streaming_content)
    except Exception as exc:  # an error while streaming is a broken download, a 500 too
        return f"the streamed body failed: {exc!r}"
    if response.status_code == 503 and response.request.get("PATH_INFO") == "/healthz":
        return None  # its answer while no worker runs (portal/health.py), not a fault
    if response.status_code >= 500:
        info = getattr(response, "exc_info", None)
        if info:
            return "".join(traceback.format_exception(*info)[-6:])
        return f"status {response.status_code}"
    return None


def upstream_only(response) -> str | None:
    """For a failure none of whose frames is the portal's code: where it was raised."""
    info = getattr(response, "exc_info", None)
    if not info:
        return None
    frames = traceback.extract_tb(info[2])
    if not frames or any(frame.filename.startswith(OURS) for frame in frames):
        return None
    last = frames[-1]
    where = last.filename.split("site-packages/")[-1]
    return f"{info[0].__name__} in {where} ({last.name})"


@contextmanager
def rolled_back():
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


LOGIN_PAGES = ("/accounts/login/", "/admin/login/")


def turned_away(response) -> bool:
    """Refused before the view read anything: 403, 405, or sent to a sign-in page."""
    if response.status_code in (403, 405):
        return True
    return response.status_code == 302 and response["Location"].startswith(LOGIN_PAGES)


def probe(route: Route, world: World, clients: Clients, roles: list[str]):
    """What the route reads (Inputs), and the (role, method) cells it does not turn away
    (a 404 for the pool's own objects means a word the route does not take). A role turned
    away is asked again with a plausible value for each name the route reads: helpdesk may
    open the operate form for one desktop, not for none."""
    inputs, reached = Inputs(), set()
    paths = canonical_paths(route, world)

    def ask(role, method, path, params):
        request = Request(role, method, path, params, "", params, "urlencoded", {})
        with recording(inputs, method), rolled_back():
            response = clients.send(request)
        if not turned_away(response) and response.status_code != 404:
            reached.add((role, method))

    for path in paths:
        for role in roles:
            for method in ("GET", "POST"):
                ask(role, method, path, [(PROBE, "1")])
    for role in roles:
        for method in ("GET", "POST"):
            names = inputs.get_names if method == "GET" else inputs.post_names
            params = [(n, world.words[n][0]) for n in sorted(names) if n in world.words]
            if (role, method) not in reached and params:
                for path in paths:
                    ask(role, method, path, params)
    return inputs, reached


def examples_for(route: Route, inputs: Inputs, role: str, method: str) -> int:
    """More examples where there is more to fill in; few for the superuser on Django's
    admin and django-rq (their routes open to everyone get as many as the portal's)."""
    if role == SUPERUSER:
        return THIRD_PARTY_EXAMPLES
    names = inputs.get_names if method == "GET" else inputs.post_names | set(inputs.fields)
    return min(EXAMPLES + EXAMPLES_PER_INPUT * len(names - {PROBE}), MAX_EXAMPLES)


def split(count: int) -> dict[str, int]:
    """A route's examples for one role and method, shared out between the MODES."""
    shares = {mode: count * share // sum(MODES.values()) for mode, share in MODES.items()}
    left = count - sum(shares.values())
    for mode in ("valid", "hostile", "one-off")[:left]:
        shares[mode] += 1
    return {mode: n for mode, n in shares.items() if n}


class Judge:
    """Whether a response is acceptable; keeps the superuser's failures inside Django's admin
    or django-rq (none of their frames the portal's code) apart: theirs, not ours."""

    def __init__(self):
        self.upstream = collections.Counter()

    def problem(self, response, role: str, route: Route) -> str | None:
        problem = problem_with(response)
        if problem and role == SUPERUSER and route.third_party:
            where = upstream_only(response)
            if where:
                self.upstream[where] += 1
                return None
        return problem


def fuzz(route: Route, world: World, clients: Clients, roles: list[str], judge: Judge):
    """Hypothesis on one route: for each role and method it serves, a number of requests
    that grows with what it reads, shared out between the MODES; a few for those it turns
    away. Raises with the smallest failing request."""
    # Django's admin and django-rq turn away everyone but staff: the superuser finds what
    # they read, helpdesk stands for the portal's roles (none of them staff) and for the
    # few routes open to anyone signed in.
    probe_roles = [SUPERUSER, "helpdesk", "anonymous"] if route.third_party else roles
    inputs, reached = probe(route, world, clients, probe_roles)
    if route.third_party:
        open_to_all = [method for role, method in reached if role == "helpdesk"]
        reached |= {(role, method) for role in ("admin", "auditor") for method in open_to_all}
    cells = [(role, method) for role in roles for method in ("GET", "POST")]
    runs = [
        ([cell], mode, count)
        for cell in cells
        if cell in reached
        for mode, count in split(examples_for(route, inputs, *cell)).items()
    ]
    refused = [cell for cell in cells if cell not in reached]
    if refused:
        count = TURNED_AWAY_EXAMPLES * (1 if route.third_party else max(2, len(refused)))
        runs.append((refused, "hostile", count))
    jobs = queue()
    statuses = collections.Counter()
    for run_cells, mode, count in runs:

        @seed(zlib.crc32(repr((route.text, run_cells, mode)).encode()))
        @hypothesis_settings(SETTINGS, max_examples=max(1, round(count * SCALE)))
        @given(request=request_strategy(route, inputs, world, run_cells, mode))
        def example(request):
            with rolled_back():
                response = clients.send(request)
                problem = judge.problem(response, request.role, route)
                if problem is None and request.method == "POST" and response.status_code == 302:
                    problem = clients.after_post(request.role, response["Location"], route, judge)
            statuses[(request.role, request.method, response.status_code)] += 1
            if jobs.count:  # nothing is enqueued before commit, but be sure none piles up
                jobs.empty()
            assert problem is None, f"{response.status_code} for {request.describe()}\n{problem}"

        example()
    return statuses


# -- the tests ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=False)
def test_every_route_can_be_built():
    """The portal's routes take only ids and words this file knows and every converter is
    one it can fill: a new route is fuzzed as soon as it exists, or this says what to add.
    (test_no_route_answers_500 then checks that what it builds reaches each route.)"""
    assert [problem for route in ROUTES if (problem := unbuildable(route))] == []
    assert len(ROUTES) > 100 and {"", "pools", "composer", "admin"} <= {
        route.namespace.split(":")[0] for route in ROUTES
    }


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Signing in is not what is tested here: a cheap hasher saves seconds per user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def plain_templates(monkeypatch):
    """Templates rendered as in production: the test client's copy of every context (for
    response.context, unused here) would cost a third of the time."""
    from django.template import Template
    from django.test.utils import _TestState

    monkeypatch.setattr(Template, "_render", _TestState.saved_data.template_render)


@pytest.mark.parametrize("third_party", [False, True], ids=["portal", "admin-and-rq"])
def test_no_route_answers_500(world, plain_templates, third_party):
    """Every route of the portal, then every route of Django's admin and django-rq, as every
    role: no 500. As the superuser, a 500 raised inside Django's admin or django-rq alone
    (none of its frames the portal's code) is their bug, not ours: it does not fail the
    test but is reported as a warning, each place once."""
    routes = [r for r in ROUTES if r.third_party == third_party and not shadowed(r)]
    roles = ROLES + ([SUPERUSER] if third_party else [])
    clients, judge = Clients(world, roles), Judge()
    failures, requests = [], 0
    started = time.monotonic()
    for route in routes:
        try:
            statuses = fuzz(route, world, clients, roles, judge)
        except Exception as exc:
            notes = "\n".join(getattr(exc, "__notes__", []))
            failures.append(f"{route}:\n{exc}\n{notes}")
        else:
            requests += sum(statuses.values())
            print(route, dict(sorted(statuses.items())))
    print(f"{len(routes)} routes, {requests} requests in {time.monotonic() - started:.1f}s")
    for where, count in sorted(judge.upstream.items()):
        warnings.warn(f"{count} x 500 as the superuser, raised in {where}", stacklevel=1)
    assert not failures, "\n\n".join(failures)
