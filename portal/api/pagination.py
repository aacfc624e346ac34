"""Cursor pagination: a page costs the same queries at any depth (no OFFSET), so a script can
walk 50,000 desktops. The ordering must be unique: every listing orders by a unique key."""

from __future__ import annotations

from base64 import b64decode

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination

from pools.models import MAX_ID

BAD_CURSOR = "Invalid cursor: use the next or previous link of a page as given."


class CursorPages(CursorPagination):
    """Pages of up to `page_size` (1 to 1,000; default 100) by the view's `ordering`
    (default: id).

    A cursor is the client's to send back unchanged, but it can be anything: one that does not
    decode, or whose position is not a value of the ordering column (not a number, beyond a
    64-bit id, a NUL byte), is a 400, never a query error."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request):
        # DRF ignores a page size it cannot read and serves the default; a script that asked
        # for "1e3" or 5,000 rows should hear that it did not get them.
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise ValidationError(
                {self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]}
            )
        return size

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.max_page_size,
                    "default": self.page_size,
                }
        return parameters

    def get_ordering(self, request, queryset, view):
        # DRF's CursorPagination reads only its own `ordering` (or an ordering filter's); a
        # view here says its own, as this module's docstring promises.
        ordering = getattr(view, "ordering", None) or self.ordering
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)

    def paginate_queryset(self, queryset, request, view=None):
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        encoded = request.query_params.get(self.cursor_query_param)
        try:
            # DRF's decoding skips characters that are not base64: "!!!" would read as no
            # cursor at all, the first page, which is not what was asked for.
            if encoded and not b64decode(encoded.encode("ascii"), validate=True):
                raise ValueError("empty cursor")
            cursor = super().decode_cursor(request)
        except (ValueError, NotFound):
            raise ValidationError({"cursor": [BAD_CURSOR]}) from None
        if cursor is not None and cursor.position is not None:
            self._check_position(cursor.position)
        return cursor

    def _check_position(self, position: str) -> None:
        name = self.ordering[0].lstrip("-")
        try:
            field = self._model._meta.get_field("id" if name == "pk" else name)
        except FieldDoesNotExist:
            return
        try:
            value = field.to_python(position)
        except DjangoValidationError:
            value = None
        bad = value is None or "\x00" in position
        if isinstance(field, models.IntegerField) and value is not None:
            bad = not (-MAX_ID <= value <= MAX_ID)
        if bad:
            raise ValidationError({"cursor": [BAD_CURSOR]})
