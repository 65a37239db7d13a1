"""Bucket digests: a reload lists only the key ranges where a table changed (changes.py lists the rest).

For a district database and a table with an integer key, the district's own query returns per bucket of
2**BUCKET_BITS consecutive keys the row count and the sum of the rows' hash values; the same digest is
computed from the district's live landing rows' `_row_hash`. An equal bucket holds the same keys with the
same hashes (each hash covers the row's key, so rows cannot trade contents unseen) and is never listed; a
bucket with a landing row whose hash is missing always differs. Only the differing buckets' rows are
streamed into the listing and only their landing rows are compared with it, so gone keys are found
within them. A duplicated source key changes its bucket's count: the bucket is listed and the duplicate
is refused as before. Unchanged rows that a check must see are listed too: children of gone parent rows
(their buckets are added). A changed table with unique keys besides the primary key, CSV sources, keys
that are not integers in the district database, and reloads where most buckets differ keep the full
listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg import sql

from orchestration.districts.contract import Table
from orchestration.districts.sources import BUCKET_BITS, DistrictSource, in_key_ranges, key_bucket, row_hash_value
from orchestration.landing.changes import TableChanges, gone_keys

# False: every reload lists every row (the reference path; tests compare both).
ENABLED = True
# Above this share of differing buckets, one full listing is cheaper than many key ranges.
MAX_DIFFERING_SHARE = 0.5

Digest = dict[int, tuple[int, Decimal | None]]  # bucket: (rows, sum of hash values; None if a hash is missing)


@dataclass
class ListingPlan:
    """Which key ranges of a table a reload lists, and the rows it leaves out as unchanged."""

    ranges: list[tuple[int, int]]  # (first key, last key) of the differing buckets, adjacent ones merged
    unlisted: int  # source rows in equal buckets (as many live landing rows)
    live: int  # live landing rows


def _landing_digests(conn: psycopg.Connection, spec: Table, code: str) -> Digest:
    pk = sql.Identifier(spec.primary_key)
    rows = conn.execute(sql.SQL(
        "select {bucket}, count(*), sum({value}::numeric), count(*) - count(_row_hash) from {landing} "
        "where district_code = %s and not _deleted group by 1").format(
        bucket=key_bucket(pk), value=row_hash_value(sql.SQL("replace(_row_hash::text, '-', '')")),
        landing=sql.Identifier("landing", spec.name)), (code,)).fetchall()
    return {int(bucket): (int(count), None if missing else total) for bucket, count, total, missing in rows}


def _buckets_of_orphans(conn: psycopg.Connection, spec: Table, code: str, gone_parents: dict[str, Table]) -> set[int]:
    """Buckets of live rows whose parent is gone: add_children_of_gone_parents finds them in the listing."""
    found: set[int] = set()
    pk = sql.Identifier(spec.primary_key)
    for fk in spec.foreign_keys:
        parent = gone_parents.get(fk.parent)
        if parent is None:
            continue
        rows = conn.execute(sql.SQL(
            "select distinct {bucket} from {landing} where district_code = %s and not _deleted "
            "and {col} in {gone}").format(bucket=key_bucket(pk), landing=sql.Identifier("landing", spec.name),
                                          col=sql.Identifier(fk.column), gone=gone_keys(parent)), (code,)).fetchall()
        found.update(int(row[0]) for row in rows)
    return found


def _ranges(buckets: set[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for bucket in sorted(buckets):
        first, last = bucket << BUCKET_BITS, ((bucket + 1) << BUCKET_BITS) - 1
        if ranges and ranges[-1][1] + 1 == first:
            ranges[-1] = (ranges[-1][0], last)
        else:
            ranges.append((first, last))
    return ranges


def plan_listing(conn: psycopg.Connection, source: DistrictSource, spec: Table, code: str,
                 gone_parents: dict[str, Table]) -> ListingPlan | None:
    """The key ranges to list for a reload of `spec` (none: the table is unchanged); None: list every row."""
    if not ENABLED or spec.column(spec.primary_key).type != "integer":
        return None
    source_digests = source.bucket_digests(spec)
    if source_digests is None:
        return None
    landing_digests = _landing_digests(conn, spec, code)
    buckets = source_digests.keys() | landing_digests.keys()
    differing = {b for b in buckets if source_digests.get(b) != landing_digests.get(b)}
    differing |= _buckets_of_orphans(conn, spec, code, gone_parents)
    if (differing and spec.unique) or len(differing) > MAX_DIFFERING_SHARE * len(buckets):
        return None  # a unique partner of a changed row (changes.add_unique_partners) may sit in any bucket
    unlisted = sum(count for bucket, (count, _) in source_digests.items() if bucket not in differing)
    return ListingPlan(_ranges(differing), unlisted, sum(count for count, _ in landing_digests.values()))


def listed_landing_rows(spec: Table, code: str, plan: ListingPlan) -> sql.Composable:
    """The district's landing rows (live and deleted) in the plan's key ranges, for compare_with_landing."""
    pk = sql.Identifier(spec.primary_key)
    items, condition = in_key_ranges(sql.Identifier("l", spec.primary_key), plan.ranges)
    return sql.SQL("(select l.{pk}, l._row_hash, l._deleted from {items} join {landing} l "
                   "on l.district_code = {code} and {condition})").format(
        pk=pk, items=items, landing=sql.Identifier("landing", spec.name), code=sql.Literal(code), condition=condition)


def account_unlisted(changes: TableChanges, plan: ListingPlan) -> None:
    """Count the unlisted rows as compare_with_landing counts listed unchanged ones: source rows and live."""
    changes.listed += plan.unlisted
    changes.live += plan.unlisted
