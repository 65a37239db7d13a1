"""Creates the state database's roles, schemas and landing tables (idempotent).

Landing layout, which the dbt sources read:
  landing.<table>          every district table, LIST-partitioned by district_code, one partition per
                           district (landing.<table>__<code>), key (district_code, <id>), plus
                           _batch_id (the load that last changed the row), _changed_at, _deleted, and
                           _row_hash (md5 of the row's source text: how a reload finds changed rows
                           without re-reading unchanged ones, orchestration/landing/changes.py)
  landing.district         every district loaded at least once (district_code, name, source) and whether the
                           registry still lists it (in_registry); codes are upper case (check constraints)
  landing.district_retirement  who retired which district's data, and when (`attendance-sync districts retire`)
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

from orchestration.districts.contract import TABLES, Table
from orchestration.districts.registry import canonical_code

READ_ROLE = "attendance_read"
WRITE_ROLE = "attendance_write"
# District-level rights (district staff): members see and write only the districts granted to them in
# landing.district_grant. Neither role is a member of READ_ROLE or WRITE_ROLE, so SET ROLE lifts nothing.
DISTRICT_READ_ROLE = "attendance_district_read"
DISTRICT_WRITE_ROLE = "attendance_district_write"
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
-- false once the registry file no longer lists the district: its data stays until it is retired, but it
-- is no longer built or reported (orchestration/district_admin.sync_registry keeps this in step).
alter table landing.district add column if not exists in_registry boolean not null default true;
create table if not exists landing.district_retirement (
    retirement_id bigint generated always as identity primary key,
    district_code text not null,
    name text,
    retired_at timestamptz not null default now(),
    db_user text not null default session_user,
    os_user text,
    rows_deleted jsonb not null
);
create table if not exists landing.writer_lock (name text primary key);
revoke all on landing.writer_lock from public;
insert into landing.writer_lock (name) values ('state_writer'), ('att_day_aggregation') on conflict (name) do nothing;
-- Which path wrote the load (orchestration/warehouse/run_origin.py): a Dagster run, a CLI command, ...
alter table landing.load_batch add column if not exists origin text;
alter table landing.load_failure add column if not exists origin text;
"""
# Every landing table holding district codes besides the district tables themselves. Not the retirement
# audit: it records a code as the state held it, which may be an old lower-case one being retired.
_CODE_TABLES = ("district", "load_batch", "load_log", "load_failure", "superseded_row")


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone() is not None


def ensure_roles(conn: psycopg.Connection) -> None:
    """Read may query state and reports; Write runs loads and builds (docs/domain.md, "Tool rights").

    Grants only what is missing, so that a Write user who is not an administrator can run this too.
    """
    for role in (READ_ROLE, WRITE_ROLE, DISTRICT_READ_ROLE, DISTRICT_WRITE_ROLE):
        if not _role_exists(conn, role):
            conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
    # Write can read everything Read can, and owns the schemas it builds; district writers read what they
    # write and stage loads in temporary tables.
    _ensure_role_pair(conn, READ_ROLE, WRITE_ROLE, ("create", "temporary"))
    _ensure_role_pair(conn, DISTRICT_READ_ROLE, DISTRICT_WRITE_ROLE, ("temporary",))


def _ensure_role_pair(conn: psycopg.Connection, read: str, write: str, write_privileges: tuple[str, ...]) -> None:
    """`write` a member of `read`, `read` may connect, `write` holds `write_privileges` on the database;
    only what is missing is granted (see ensure_roles)."""
    held = conn.execute(
        "select current_database(), pg_has_role(%(write)s, %(read)s, 'member'), "
        "has_database_privilege(%(read)s, current_database(), 'connect'), "
        "bool_and(has_database_privilege(%(write)s, current_database(), privilege)) "
        "from unnest(%(privileges)s::text[]) as privilege",
        {"read": read, "write": write, "privileges": list(write_privileges)}).fetchone()
    assert held is not None
    database_name, write_reads, read_connects, write_holds = held
    database = sql.Identifier(str(database_name))
    if not write_reads:
        conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(read), sql.Identifier(write)))
    if not read_connects:
        conn.execute(sql.SQL("grant connect on database {} to {}").format(database, sql.Identifier(read)))
    if not write_holds:
        conn.execute(sql.SQL("grant {} on database {} to {}").format(
            sql.SQL(", ").join(sql.SQL(privilege) for privilege in write_privileges), database,
            sql.Identifier(write)))


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
        sql.SQL("_row_hash uuid"),
        sql.SQL("primary key (district_code, {})").format(sql.Identifier(spec.primary_key)),
    ]
    return sql.SQL("create table if not exists landing.{} ({}) partition by list (district_code)").format(
        sql.Identifier(spec.name), sql.SQL(", ").join(columns)
    )


def partition_name(table_name: str, district_code: str) -> str:
    """landing.<table>__<code in lower case>: codes are canonical (upper case), so lower-casing them loses
    nothing, and table names hold no double underscore, so no two (table, code) pairs share a name."""
    return f"{table_name}__{canonical_code(district_code).lower()}"


def ensure_partition(conn: psycopg.Connection, table_name: str, district_code: str) -> None:
    code = canonical_code(district_code)
    conn.execute(
        sql.SQL("create table if not exists landing.{} partition of landing.{} for values in ({})").format(
            sql.Identifier(partition_name(table_name, code)), sql.Identifier(table_name), sql.Literal(code),
        )
    )


def ensure_row_hash_columns(conn: psycopg.Connection) -> None:
    """Landing tables made before row hashes were kept get the column, empty: each row's hash is then
    recorded by its next load (changes.py). Altered only where missing: ALTER takes an exclusive lock."""
    missing = conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'landing' and c.relkind = 'p' and c.relname = any(%s) and not exists ("
        "select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = '_row_hash' and not a.attisdropped)",
        ([spec.name for spec in TABLES],)).fetchall()
    for (table,) in missing:
        conn.execute(sql.SQL("alter table landing.{} add column _row_hash uuid").format(sql.Identifier(table)))


def ensure_canonical_code_checks(conn: psycopg.Connection) -> None:
    """A check constraint on every landing table with district codes: only the canonical (upper-case) form.

    Added once per table. A warehouse that already holds a lower-case code keeps working without the
    constraint on the tables that hold it; the registry sync refuses such a code by name
    (district_admin.sync_registry), and retiring it lets the constraint be added by the next run.
    """
    for table in [*(spec.name for spec in TABLES), *_CODE_TABLES]:
        name = f"{table}_district_code_canonical"
        present = conn.execute(
            "select 1 from pg_constraint where conname = %s and conrelid = to_regclass(%s)",
            (name, f"landing.{table}")).fetchone()
        if present:
            continue
        try:
            with conn.transaction():
                conn.execute(sql.SQL("alter table landing.{} add constraint {} check (district_code = upper("
                                     "district_code))").format(sql.Identifier(table), sql.Identifier(name)))
        except psycopg.errors.CheckViolation:
            continue


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
    ensure_row_hash_columns(conn)
    ensure_canonical_code_checks(conn)
    ensure_district_access(conn)
    conn.execute("reset role")


# District-level access (rights.py). Everything here is owned by the write role; the two functions
# that district users call are SECURITY DEFINER with a fixed search_path, and read the grants of
# session_user: SET ROLE to another role the login belongs to cannot borrow that role's grants.
_DISTRICT_ACCESS = """
create table if not exists landing.district_grant (
    grantee name not null,
    access text not null check (access in ('read', 'write')),
    district_code text not null,
    granted_by name not null default session_user,
    granted_at timestamptz not null default now(),
    primary key (grantee, access, district_code)
);
comment on table landing.district_grant is
    'District-level rights: grantee may read (or write and read) district_code only. See rights.py.';

create or replace function landing.granted_districts(access text) returns setof text
language sql stable security definer set search_path = pg_catalog, pg_temp
as $$
    select distinct granted.district_code
    from landing.district_grant as granted
    where granted.grantee = session_user
        and (granted.access = $1 or ($1 = 'read' and granted.access = 'write'))
$$;
revoke all on function landing.granted_districts(text) from public;
grant execute on function landing.granted_districts(text) to attendance_district_read;

-- A district writer's load needs a landing partition for its district; creating one is DDL on a table it
-- does not own, so this function does it, for a granted district and a partitioned landing table only.
create or replace function landing.create_district_partition(parent text, partition text, code text)
returns void
language plpgsql security definer set search_path = pg_catalog, pg_temp
as $$
begin
    if not (pg_has_role(session_user, 'attendance_write', 'member')
            or code in (select landing.granted_districts('write'))) then
        raise exception 'permission denied: % may not load district %', session_user, code
            using errcode = 'insufficient_privilege';
    end if;
    if not exists (
        select 1 from pg_partitioned_table as partitioned
        join pg_class as parent_table on parent_table.oid = partitioned.partrelid
        join pg_namespace as schema on schema.oid = parent_table.relnamespace
        where schema.nspname = 'landing' and parent_table.relname = parent
    ) or left(partition, length(parent) + 2) <> parent || '__' then
        raise exception 'not a landing partition: %', partition using errcode = 'invalid_parameter_value';
    end if;
    execute format('create table if not exists landing.%I partition of landing.%I for values in (%L)',
                   partition, parent, code);
end
$$;
revoke all on function landing.create_district_partition(text, text, text) from public;
grant execute on function landing.create_district_partition(text, text, text) to attendance_district_write;

-- Row security of a state or reports table, applied by dbt after every build of it
-- (macros/row_security.sql) and by `rights grant --district` to the tables that exist. Idempotent and
-- without DDL when everything is in place, so a routine build takes no extra exclusive lock.
-- State-level readers see every row; district-level readers the rows of their districts; in a table
-- keyed by state_id (the statewide report), the students enrolled in their districts; else nothing.
-- District-level writers may change the rows of their districts in state tables, never in reports.
-- The owner (state-level writers, dbt) bypasses row security.
create or replace function landing.apply_row_security(target regclass) returns void
language plpgsql set search_path = pg_catalog, pg_temp
as $$
declare
    has_district boolean;
    has_state_id boolean;
begin
    select coalesce(bool_or(attname = 'district_code'), false), coalesce(bool_or(attname = 'state_id'), false)
    into has_district, has_state_id
    from pg_attribute where attrelid = target and attnum > 0 and not attisdropped;
    if not (select relrowsecurity from pg_class where oid = target) then
        execute format('alter table %s enable row level security', target);
    end if;
    if not exists (select 1 from pg_policy where polrelid = target and polname = 'state_level_read') then
        execute format('create policy state_level_read on %s for select to attendance_read using (true)', target);
    end if;
    if not exists (select 1 from pg_policy where polrelid = target and polname = 'district_level_read') then
        if has_district then
            execute format('create policy district_level_read on %s for select to attendance_district_read '
                           'using (district_code in (select landing.granted_districts(''read'')))', target);
        elsif has_state_id then
            execute format('create policy district_level_read on %s for select to attendance_district_read '
                           'using (state_id in (select person.state_id from state.person '
                           'join state.enrollment on enrollment.district_code = person.district_code '
                           'and enrollment.person_id = person.person_id '
                           'where person.district_code in (select landing.granted_districts(''read''))))',
                           target);
        end if;
    end if;
    -- District-level writers rebuild their districts' rows of the state tables (delete and insert).
    if has_district and (select relnamespace = 'state'::regnamespace from pg_class where oid = target)
            and not exists (select 1 from pg_policy where polrelid = target and polname = 'district_level_write') then
        execute format('create policy district_level_write on %s to attendance_district_write '
                       'using (district_code in (select landing.granted_districts(''write''))) '
                       'with check (district_code in (select landing.granted_districts(''write'')))', target);
    end if;
end
$$;
"""

# Landing tables a district writer's load writes, and what it needs on each.
# (superseded_row is read by the aggregation's incremental build, which a district writer may run.)
_DISTRICT_WRITER_TABLES = {"district": "select, insert, update", "load_batch": "select, insert, update",
                           "load_log": "select, insert", "load_failure": "insert",
                           "superseded_row": "select, insert"}


def ensure_district_access(conn: psycopg.Connection) -> None:
    """The grant table, its functions, and row security of landing for district-level writers."""
    conn.execute(_DISTRICT_ACCESS)
    conn.execute(sql.SQL("grant usage on schema {} to {}").format(
        sql.SQL(", ").join(sql.Identifier(schema) for schema in SCHEMAS), sql.Identifier(DISTRICT_READ_ROLE)))
    # District writers are Write users for their districts: they take the writer lock like everyone who writes.
    conn.execute(sql.SQL("grant select, insert, update on {} to {}").format(
        sql.SQL(WRITER_LOCK_TABLE), sql.Identifier(DISTRICT_WRITE_ROLE)))
    writable = {**_DISTRICT_WRITER_TABLES, **{spec.name: "select, insert, update" for spec in TABLES}}
    for name, privileges in writable.items():
        _ensure_district_write_policy(conn, name, privileges)


def _ensure_district_write_policy(conn: psycopg.Connection, name: str, privileges: str) -> None:
    """District writers write only rows of their districts (with check); the owner bypasses this."""
    table = sql.Identifier("landing", name)
    state = conn.execute(
        "select c.relrowsecurity, exists (select 1 from pg_policy p where p.polrelid = c.oid "
        "and p.polname = 'district_level_write'), (select bool_and(has_table_privilege(%s, c.oid, privilege)) "
        "from unnest(string_to_array(%s, ', ')) as privilege) from pg_class c where c.oid = %s::regclass",
        (DISTRICT_WRITE_ROLE, privileges, f"landing.{name}")).fetchone()
    assert state is not None
    secured, has_policy, granted = state
    if not secured:
        conn.execute(sql.SQL("alter table {} enable row level security").format(table))
    if not has_policy:
        conn.execute(sql.SQL(
            "create policy district_level_write on {} to {} "
            "using (district_code in (select landing.granted_districts('write'))) "
            "with check (district_code in (select landing.granted_districts('write')))").format(
                table, sql.Identifier(DISTRICT_WRITE_ROLE)))
    if not granted:
        conn.execute(sql.SQL("grant {} on {} to {}").format(
            sql.SQL(privileges), table, sql.Identifier(DISTRICT_WRITE_ROLE)))


def ensure_district_partition(conn: psycopg.Connection, table_name: str, district_code: str) -> None:
    """ensure_partition for a user who does not own landing: PostgreSQL checks the district grant."""
    conn.execute("select landing.create_district_partition(%s, %s, %s)",
                 (table_name, partition_name(table_name, district_code), district_code))
