"""Creates the state database's roles, schemas and landing tables (idempotent).

Landing layout, which the dbt sources read:
  landing.<table>          every district table, LIST-partitioned by district_code, one partition per
                           district (landing.<table>__<code>), key (district_code, <id>), plus
                           _batch_id (the load that last changed the row), _changed_at, _deleted
  landing.district         the registry as last loaded (district_code, name, source)
  landing.load_batch       one row per committed district load
  landing.load_log         one row per district load and table (inserted/updated/deleted/unchanged)
  landing.load_failure     failed loads, written after the rollback so the failure is on record
  landing.superseded_row   the previous image of every updated row, so incremental models can find
                           the keys a row had before a change (an attendance row moved to another day)
  landing.writer_lock      one row per writer lock (writer_lock.py); no privileges for the read role, so
                           that only Write users can lock its rows
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from orchestration.district_tables import TABLES, Table

READ_ROLE = "attendance_read"
WRITE_ROLE = "attendance_write"
SCHEMAS = ("landing", "state", "reports")
SYSTEM_COLUMNS = ("_batch_id", "_changed_at", "_deleted")
WRITER_LOCK_TABLE = "landing.writer_lock"

_BOOKKEEPING = """
create table if not exists landing.district (
    district_code text primary key,
    name text not null,
    source text not null,
    registered_at timestamptz not null default now()
);
create table if not exists landing.load_batch (
    batch_id bigint generated always as identity primary key,
    district_code text not null,
    started_at timestamptz not null,
    committed_at timestamptz not null default clock_timestamp()
);
create index if not exists load_batch_district on landing.load_batch (district_code, batch_id);
create table if not exists landing.load_log (
    batch_id bigint not null references landing.load_batch,
    district_code text not null,
    table_name text not null,
    rows_inserted bigint not null,
    rows_updated bigint not null,
    rows_deleted bigint not null,
    rows_unchanged bigint not null,
    duration_ms numeric not null,
    loaded_at timestamptz not null default clock_timestamp(),
    primary key (batch_id, table_name)
);
create table if not exists landing.load_failure (
    failure_id bigint generated always as identity primary key,
    district_code text not null,
    error text not null,
    failed_at timestamptz not null default clock_timestamp()
);
create table if not exists landing.superseded_row (
    batch_id bigint not null,
    district_code text not null,
    table_name text not null,
    row_id integer not null,
    old_row jsonb not null
);
create index if not exists superseded_row_lookup on landing.superseded_row (table_name, district_code, batch_id);
create table if not exists landing.writer_lock (name text primary key);
revoke all on landing.writer_lock from public;
insert into landing.writer_lock (name) values ('state_writer'), ('att_day_aggregation') on conflict (name) do nothing;
"""


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone() is not None


def ensure_roles(conn: psycopg.Connection) -> None:
    """Read may query state and reports; Write runs loads and builds (DOMAIN.md, "Tool rights").

    Grants only what is missing, so that a Write user who is not an administrator can run this too.
    """
    for role in (READ_ROLE, WRITE_ROLE):
        if not _role_exists(conn, role):
            conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
    held = conn.execute(
        "select pg_has_role(%(write)s, %(read)s, 'member'), "
        "has_database_privilege(%(write)s, current_database(), 'create'), "
        "has_database_privilege(%(read)s, current_database(), 'connect')",
        {"read": READ_ROLE, "write": WRITE_ROLE}).fetchone()
    assert held is not None
    write_reads, write_creates, read_connects = held
    database_name = sql.Identifier(str(conn.execute("select current_database()").fetchone()[0]))  # type: ignore[index]
    # Write can read everything Read can, and owns the schemas it builds.
    if not write_reads:
        conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(READ_ROLE), sql.Identifier(WRITE_ROLE)))
    if not write_creates:
        conn.execute(sql.SQL("grant create, temporary on database {} to {}").format(
            database_name, sql.Identifier(WRITE_ROLE)))
    if not read_connects:
        conn.execute(sql.SQL("grant connect on database {} to {}").format(database_name, sql.Identifier(READ_ROLE)))


def landing_table_sql(spec: Table) -> sql.Composed:
    columns = [sql.SQL("district_code text not null")]
    columns += [
        sql.SQL("{} {}{}").format(sql.Identifier(c.name), sql.SQL(c.type), sql.SQL("" if c.nullable else " not null"))
        for c in spec.columns
    ]
    columns += [
        sql.SQL("_batch_id bigint not null"),
        sql.SQL("_changed_at timestamptz not null"),
        sql.SQL("_deleted boolean not null default false"),
        sql.SQL("primary key (district_code, {})").format(sql.Identifier(spec.primary_key)),
    ]
    return sql.SQL("create table if not exists landing.{} ({}) partition by list (district_code)").format(
        sql.Identifier(spec.name), sql.SQL(", ").join(columns)
    )


def partition_name(table_name: str, district_code: str) -> str:
    return f"{table_name}__{district_code.lower()}"


def ensure_partition(conn: psycopg.Connection, table_name: str, district_code: str) -> None:
    conn.execute(
        sql.SQL("create table if not exists landing.{} partition of landing.{} for values in ({})").format(
            sql.Identifier(partition_name(table_name, district_code)), sql.Identifier(table_name),
            sql.Literal(district_code),
        )
    )


def ensure_warehouse(conn: psycopg.Connection) -> None:
    """Roles, schemas, bookkeeping and partitioned landing tables; safe to run any number of times."""
    # Concurrent first runs (tests, Dagster) would race on catalog rows without this.
    conn.execute("select pg_advisory_xact_lock(hashtext('attendance_sync:warehouse_setup'))")
    ensure_roles(conn)
    # Everything below is owned by the write role, so its members (and only they) can load and build.
    conn.execute(sql.SQL("set local role {}").format(sql.Identifier(WRITE_ROLE)))
    for schema in SCHEMAS:
        conn.execute(sql.SQL("create schema if not exists {} authorization {}").format(
            sql.Identifier(schema), sql.Identifier(WRITE_ROLE)))
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(
            sql.Identifier(schema), sql.Identifier(READ_ROLE)))
    conn.execute(_BOOKKEEPING)
    for spec in TABLES:
        conn.execute(landing_table_sql(spec))
    conn.execute("reset role")
