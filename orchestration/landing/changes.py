"""Finding a district table's changes without moving or re-checking its unchanged rows.

Every landing row keeps `_row_hash`: md5 of the row's text form as the source gave it
(sources.row_text_hash). A reload first lists the key and hash of every source row (a district database
computes them in its own query; a CSV file is copied whole and hashed on the state side) and compares the
list with the district's landing partition in one join:
  candidates  keys that are new, flagged deleted in landing (returning), or whose hash differs (or is
              missing: a row loaded before hashes existed is a candidate once, then its hash is kept);
  gone        live landing keys missing from the list (flagged deleted by the load).
Only candidates are then copied in full, checked and typed (load.py). The checks stay as strict as a
full load's because an unchanged row passed them when it was loaded, and every check that involves other
rows sees them: parent lookups also search the district's unchanged live landing rows, unchanged rows
whose parent is gone become candidates, and unchanged rows sharing a unique key with a candidate join it.
A table whose keys are not unique in the source, or whose changes are most of it, is staged whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from orchestration.districts.contract import Table

# Above this share of changed rows, one full copy of the table is cheaper than fetching rows by key.
FETCH_BY_KEY_MAX_SHARE = 0.25


@dataclass
class TableChanges:
    """What the load knows about one table of the district before applying it."""

    spec: Table
    partial: bool = False  # only candidates are staged (else every source row)
    landing_empty: bool = False  # the district has no landing row in this table (a first load)
    listed: int = 0  # source rows (partial)
    live: int = 0  # live landing rows before the load
    gone: int = 0  # of those, how many the load flags deleted
    candidates: int = 0


def temp(prefix: str, spec: Table) -> sql.Identifier:
    return sql.Identifier(f"{prefix}_{spec.name}")


def _landing(spec: Table) -> sql.Identifier:
    return sql.Identifier("landing", spec.name)


def landing_has_rows(conn: psycopg.Connection, spec: Table, code: str) -> bool:
    row = conn.execute(sql.SQL("select exists (select 1 from {} where district_code = %s)").format(
        _landing(spec)), (code,)).fetchone()
    return bool(row and row[0])


def create_listing(conn: psycopg.Connection, spec: Table) -> sql.Identifier:
    """The temporary table a source streams (key, hash) of every row into, numbered in source order."""
    seen = temp("seen", spec)
    conn.execute(sql.SQL("create temp table {} (_row bigint generated always as identity, _key text, _hash uuid) "
                         "on commit drop").format(seen))
    return seen


def listing_from_file(conn: psycopg.Connection, spec: Table, file_table: sql.Identifier) -> None:
    """The listing of a CSV file already copied whole: its record numbers, keys and text hashes."""
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in spec.column_names)
    conn.execute(sql.SQL("create temp table {seen} on commit drop as select _row, {pk} as _key, "
                         "md5(row({cols})::text)::uuid as _hash from {file}").format(
        seen=temp("seen", spec), pk=sql.Identifier(spec.primary_key), cols=columns, file=file_table))


def has_duplicate_keys(conn: psycopg.Connection, spec: Table) -> bool:
    row = conn.execute(sql.SQL("select exists (select 1 from {} group by _key having count(*) > 1)").format(
        temp("seen", spec))).fetchone()
    return bool(row and row[0])


def compare_with_landing(conn: psycopg.Connection, spec: Table, code: str, changes: TableChanges) -> None:
    """diff_<table>: the candidates (_row set) and the gone keys (_row null, _id the key), from the listing
    against landing. Keys are unique in the listing here (the caller checked)."""
    pk = sql.Identifier(spec.primary_key)
    # A text comparison of keys: a source key that is not a valid integer is simply a candidate, and its
    # staging reports it.
    conn.execute(sql.SQL(
        "create temp table {diff} on commit drop as "
        "select s._row, s._key, l.{pk} as _id, l._deleted as _was_deleted "
        "from {seen} s full join (select {pk}, _row_hash, _deleted from {landing} where district_code = {code}) l "
        "on l.{pk}::text = s._key "
        "where (s._row is not null and (l.{pk} is null or l._deleted or l._row_hash is distinct from s._hash)) "
        "or (s._row is null and not l._deleted)").format(
        diff=temp("diff", spec), pk=pk, seen=temp("seen", spec), landing=_landing(spec), code=sql.Literal(code)))
    counts = conn.execute(sql.SQL(
        "select (select count(*) from {seen}), count(*) filter (where _row is null), "
        "count(*) filter (where _row is not null and _id is null), "
        "count(*) filter (where _row is not null and _was_deleted), count(_row) from {diff}").format(
        seen=temp("seen", spec), diff=temp("diff", spec))).fetchone()
    assert counts is not None
    listed, gone, new, returning, candidates = (int(value) for value in counts)
    changes.listed, changes.gone, changes.candidates = listed, gone, candidates
    changes.live = listed - new - returning + gone


def gone_keys(spec: Table) -> sql.Composable:
    """A subquery of the table's gone keys (its diff_<table> exists once the table is staged)."""
    return sql.SQL("(select _id from {} where _row is null)").format(temp("diff", spec))


def add_children_of_gone_parents(conn: psycopg.Connection, spec: Table, code: str,
                                 gone_parents: dict[str, Table], changes: TableChanges) -> None:
    """Unchanged rows whose parent is gone become candidates, so that the parent check reports them."""
    pk = sql.Identifier(spec.primary_key)
    for fk in spec.foreign_keys:
        parent = gone_parents.get(fk.parent)
        if parent is None:
            continue
        changes.candidates += conn.execute(sql.SQL(
            "insert into {diff} (_row, _key) select s._row, s._key from {landing} l "
            "join {seen} s on s._key = l.{pk}::text where l.district_code = %s and not l._deleted "
            "and l.{col} in {gone} and not exists (select 1 from {diff} c where c._row = s._row)").format(
            diff=temp("diff", spec), landing=_landing(spec), gone=gone_keys(parent), col=sql.Identifier(fk.column),
            seen=temp("seen", spec), pk=pk), (code,)).rowcount


def candidate_keys(conn: psycopg.Connection, spec: Table) -> list[str] | None:
    """The candidates' keys in source order; None when one is missing (it cannot be fetched by key)."""
    rows = conn.execute(sql.SQL("select _key from {} where _row is not null order by _row").format(
        temp("diff", spec))).fetchall()
    keys = [row[0] for row in rows]
    return None if any(key is None for key in keys) else keys


def number_fetched_rows(conn: psycopg.Connection, spec: Table, fetched: sql.Identifier, raw: sql.Identifier) -> None:
    """Move fetched candidates into raw_<table> under their row numbers in the listing (source order)."""
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in spec.column_names)
    conn.execute(sql.SQL(
        "insert into {raw} (_row, {cols}) overriding system value select c._row, {fcols} from {fetched} f "
        "join {diff} c on c._key = f.{pk} and c._row is not null").format(
        raw=raw, cols=columns, fcols=sql.SQL(", ").join(sql.Identifier("f", n) for n in spec.column_names),
        fetched=fetched, diff=temp("diff", spec), pk=sql.Identifier(spec.primary_key)))


def gone_after_full_staging(conn: psycopg.Connection, spec: Table, code: str, new: sql.Identifier,
                            changes: TableChanges) -> None:
    """diff_<table>'s gone keys and the live count when every source row is staged in `new`."""
    pk = sql.Identifier(spec.primary_key)
    conn.execute(sql.SQL("drop table if exists {}").format(temp("diff", spec)))  # the listing's, if compared
    conn.execute(sql.SQL("create temp table {diff} (_row bigint, _key text, _id {type}, _was_deleted boolean) "
                         "on commit drop").format(diff=temp("diff", spec),
                                                  type=sql.SQL(spec.column(spec.primary_key).type)))
    if changes.landing_empty:
        return
    changes.gone = conn.execute(sql.SQL(
        "insert into {diff} (_id) select l.{pk} from {landing} l where l.district_code = %s and not l._deleted "
        "and not exists (select 1 from {new} n where n.{pk} = l.{pk})").format(
        diff=temp("diff", spec), pk=pk, landing=_landing(spec), new=new), (code,)).rowcount
    row = conn.execute(sql.SQL("select count(*) from {} where district_code = %s and not _deleted").format(
        _landing(spec)), (code,)).fetchone()
    changes.live = int(row[0]) if row else 0


def add_unique_partners(conn: psycopg.Connection, spec: Table, code: str, new: sql.Identifier) -> None:
    """Unchanged live rows sharing a unique key with a staged row join new_<table> (typed, from landing),
    so that the duplicate check sees both rows, under the unchanged row's number in the listing."""
    if not spec.unique:
        return
    pk = sql.Identifier(spec.primary_key)
    shares = sql.SQL(" or ").join(
        sql.SQL("({}) = ({})").format(sql.SQL(", ").join(sql.Identifier("n", c) for c in columns),
                                      sql.SQL(", ").join(sql.Identifier("l", c) for c in columns))
        for columns in spec.unique)
    conn.execute(sql.SQL(
        "insert into {new} (_row, {cols}, _hash) select s._row, {lcols}, l._row_hash from {landing} l "
        "join {seen} s on s._key = l.{pk}::text where l.district_code = %s and not l._deleted "
        "and not exists (select 1 from {new} n where n.{pk} = l.{pk}) "
        "and exists (select 1 from {new} n where {shares})").format(
        new=new, cols=sql.SQL(", ").join(sql.Identifier(c) for c in spec.column_names),
        lcols=sql.SQL(", ").join(sql.Identifier("l", c) for c in spec.column_names), landing=_landing(spec),
        seen=temp("seen", spec), pk=pk, shares=shares), (code,))
