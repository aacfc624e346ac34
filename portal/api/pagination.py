"""Cursor pagination: a page costs the same queries at any depth (no OFFSET), so a script can
walk 50,000 desktops. The ordering must be unique: every listing orders by a unique key."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class CursorPages(CursorPagination):
    """Pages of up to `page_size` (at most 1,000) by the view's `ordering` (default: id)."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
