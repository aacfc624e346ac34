"""Listing 50,000 desktops through the API page by page: does a deep page cost what the first
one does (issue 13's acceptance: the same queries per page at any depth, cursor pagination)?

Builds a fresh PostgreSQL database (migrated, so it has the real indexes; a throwaway database
on 127.0.0.1 dropped at the end) with bench/pages.py's inventory: 50,000 desktops written
with bulk_create in five pools (one of 45,000), operations and their tasks; then VACUUM
ANALYZE. A script's token (Authorization: Bearer) walks every page of /api/v1/desktops/ by its
next links, at 1,000 and at 100 desktops a page, and one pool's desktops filtered by state,
through Django's test Client (the whole server side: middleware, authentication, view,
queries, JSON; no network) under DEBUG=false. Every page's queries are counted; the first,
middle and last pages are then timed again (median of RUNS requests each) and shown as
ratios against the first page.

Usage: .venv/bin/python bench/api_pagination.py [DESKTOPS] [RUNS]
BENCH_DATABASE=sqlite runs it on SQLite instead; BENCH_DATABASE_URL=postgres://... on another
empty database.
"""

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pages import analyze, bench_site, populate  # noqa: E402


def main(total: int = 50_000, runs: int = 9) -> None:
    # A walk of 500 pages is one script's honest use, not a flood.
    with bench_site("api", API_RATE_USER="100000/minute"):
        from django.db import connection

        started = time.monotonic()
        world = populate(total)
        analyze()
        print(
            f"{total} desktops on {connection.vendor}, created in "
            f"{time.monotonic() - started:.1f} s"
        )
        measure(world, runs)


def measure(world: dict, runs: int) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from portal.models import ApiToken

    _, secret = ApiToken.issue(world["admin"], "bench")
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    assert client.get("/api/v1/desktops/?page_size=1").status_code == 200  # last_used written

    walks = [
        ("all desktops, 1,000 a page", "/api/v1/desktops/?page_size=1000"),
        ("all desktops, 100 a page", "/api/v1/desktops/?page_size=100"),
        (
            "pool BIG, available, 1,000 a page",
            "/api/v1/desktops/?pool=BIG&state=available&page_size=1000",
        ),
    ]
    print(f"queries of every page; time: median of {runs} requests of that page")
    print(
        "| walk | pages | rows | whole walk | queries per page (min-max) "
        "| first page | middle page (x first) | last page (x first) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, first in walks:
        links, queries, rows = [], [], 0
        link = first
        walk_started = time.perf_counter()
        while link:
            links.append(link)
            with CaptureQueriesContext(connection) as captured:
                response = client.get(link)
            assert response.status_code == 200, (link, response.content[:300])
            body = response.json()
            queries.append(len(captured))
            rows += len(body["results"])
            link = body["next"]
        walk_seconds = time.perf_counter() - walk_started
        timed = [links[0], links[len(links) // 2], links[-1]]
        medians = [_median_ms(client, link, runs) for link in timed]
        base = medians[0]
        print(
            f"| {label} | {len(links)} | {rows:,} | {walk_seconds:.1f} s "
            f"| {min(queries)}-{max(queries)} | {base:.1f} ms "
            f"| {medians[1]:.1f} ms ({medians[1] / base:.2f}) "
            f"| {medians[2]:.1f} ms ({medians[2] / base:.2f}) |"
        )


def _median_ms(client, link: str, runs: int) -> float:
    client.get(link)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        client.get(link)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
