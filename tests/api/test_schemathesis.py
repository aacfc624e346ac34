"""Property-based tests of the whole API from its own schema (schemathesis), against a live
server: for every route and method, generated requests (valid and invalid) never get a 500,
every response conforms to the schema (status code, content type, body), and a route that
declares authentication refuses a request without it.

The schema is generated here from the code (the same as /api/schema/ serves), so a new route
is covered as soon as it exists. Requests carry an administrator's token, the widest role;
the role matrix (tests/portal/test_role_matrix.py) covers what each role may do.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
)

from portal.models import ApiToken
from tests import factories

# Enough to reach every documented answer of a route; API_FUZZ_EXAMPLES raises it for a long
# local run.
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "25"))

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))


@pytest.fixture
def estate(transactional_db, lab, users):
    """What the generated requests find: a pool with desktops in several states, an operation,
    audit events; ids 1..n exist for the generator's small integers to hit."""
    pool = factories.pool("Fuzz", lab.v1, datastores=[lab.ds["ds-a"]], size=3)
    desktops = factories.desktops(pool, ["FUZ-1", "FUZ-2", "FUZ-3"], lab.ds["ds-a"])
    operation = factories.operation(pool, users["admin"], status="succeeded")
    factories.task(operation, desktops[0], status="succeeded")
    _, secret = ApiToken.issue(users["admin"], "fuzz")
    return {"Authorization": f"Bearer {secret}"}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,  # no example database written into the checkout
)
def test_api(case, live_server, estate):
    case.call_and_validate(
        base_url=live_server.url,
        headers=estate,
        # Two checks judge what the API accepts rather than how it answers, and would fail on
        # choices made on purpose: a request the schema allows may still be refused for what
        # it says (a name already taken, a NUL byte, a cursor the API never issued: 400), and
        # one it forbids may be accepted because DRF reads "12" as 12 and 12 as "12", as most
        # JSON APIs do. Every check of the answers runs: never a 5xx, status codes, content
        # types and bodies as documented, and authentication required where declared.
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )
