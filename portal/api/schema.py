"""The OpenAPI schema's shared parts: the problem+json body every error has, declared on every
operation, so a client (and schemathesis, in the tests) knows what an error looks like."""

from __future__ import annotations

from composer import kinds

PROBLEM = {
    "type": "object",
    "description": "An error, as RFC 9457 problem details.",
    "properties": {
        "type": {"type": "string", "description": "A stable name for the kind of error."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "object",
            "description": "For a bad request: the messages of each field ('non_field_errors' "
            "for the request as a whole).",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["type", "title", "status"],
    "additionalProperties": True,
}

# Every operation may answer these; a route adds its own (409 for a conflict, ...) where they
# apply. 401: no or a bad token; 403: the role does not allow it; 429: slow down.
COMMON = {
    "400": "The request has errors (see `errors`).",
    "401": "No credentials, or a bad, expired or revoked token.",
    "403": "Your role does not allow this.",
    "404": "No such object.",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "409": "The request conflicts with the current state.",
    "415": "Unsupported media type.",
    "429": "Too many requests: retry after Retry-After seconds.",
}

# A route that takes an Idempotency-Key (portal/api/idempotency.py) may also answer this.
IDEMPOTENT = {"422": "This Idempotency-Key was used before for a different request."}


def add_problem_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM
    reference = {"$ref": "#/components/schemas/Problem"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            extra = IDEMPOTENT if _takes_idempotency_key(operation) else {}
            for code, description in {**COMMON, **extra}.items():
                responses.setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/problem+json": {"schema": reference}},
                    },
                )
    return result


def _takes_idempotency_key(operation) -> bool:
    return any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", []))


def pool_operation_kinds() -> list[tuple[str, str]]:
    """The kinds POST /api/v1/pools/<id>/operations/ starts: those the pool page offers."""
    return [(k.name, k.label) for k in kinds.on_pool_page()]
