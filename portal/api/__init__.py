"""The automation API (/api/v1/): what an administrator, helpdesk or auditor does on the pages,
from a script or an image pipeline. Django REST framework over the same services as the pages
(composer.services): one path for permissions, plans and the audit log.

authentication.py  personal tokens (Authorization: Bearer lcp_...)
problems.py        every error as problem+json (RFC 9457)
pagination.py      cursor pagination: the same cost per page at any depth
urls.py            the routes; schema at /api/schema/, reference at /api/docs/
"""
