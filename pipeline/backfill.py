"""Backfill: a range of nights, oldest first, through the same stage functions as every night.

A night already published is left as it is (``rescore=True`` runs it again, which replaces its
rows with the same ones when nothing changed), so a backfill that stopped part way is resumed by
running the same command again, and a finished one run again changes nothing. Nights run one at
a time in date order because each night's extraction starts at the previous night's watermarks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

from pipeline.config import Settings, load_settings
from pipeline.nightly import run_night
from pipeline.stages.context import night_context
from pipeline.store import runs

log = logging.getLogger(__name__)


def nights_between(start: date, end: date) -> list[date]:
    """Every night from ``start`` to ``end``, both included.

    >>> nights_between(date(2026, 1, 30), date(2026, 2, 1))
    [datetime.date(2026, 1, 30), datetime.date(2026, 1, 31), datetime.date(2026, 2, 1)]
    """
    if end < start:
        raise ValueError(f"the backfill ends ({end}) before it starts ({start})")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def backfill(start: date, end: date, settings: Settings | None = None, rescore: bool = False,
             on_night: Callable[[dict], None] | None = None) -> list[dict]:
    """Run the nights ``start``..``end`` in order; one summary per night.

    A night that fails stops the backfill there, with the nights before it published and the
    ones after it untouched: the same command resumes from the failed night.
    """
    settings = settings or load_settings()
    nights = nights_between(start, end)
    last_over = (datetime.now(timezone.utc) - timedelta(days=1)).date()
    if end > last_over:
        raise ValueError(f"night {end} is not over until {end + timedelta(days=1)} 00:00 UTC; "
                         f"the latest night a backfill can score is {last_over}")
    _, wh = night_context(start, settings)
    done = []
    for night in nights:
        if not rescore and runs.is_published(wh, night):
            summary = {"night": night, "status": "already published",
                       "risk_rows_sha256": runs.risk_rows_sha256(wh, night)}
        else:
            log.info("backfill: night %s", night)
            published = run_night(night, settings)["publish"]
            summary = {"night": night, "status": "published", "risk_rows": published["risk_rows"],
                       "risk_rows_sha256": published["risk_rows_sha256"]}
        done.append(summary)
        if on_night:
            on_night(summary)
    return done
