"""The mass-delete guard: a load may not silently flag most of a district table's live rows deleted.

A district extract that lost its rows (a file with only its header, an export that ran against an empty
database) looks to the loader exactly like a district that deleted everything. A load that would flag
more than a share of a table's live rows deleted (default 50%, ATTENDANCE_MAX_DELETE_SHARE) is refused,
unless fewer than a floor of rows would go (default 20, ATTENDANCE_MASS_DELETE_MIN_ROWS), so that tiny
tables such as school_year may lose a row. The operator allows it explicitly: `--allow-mass-delete`, the
Dagster jobs' `allow_mass_delete` config, or the district's registry entry (`allow_mass_delete: true`, or
its own `max_delete_share`). Every load that went above the global limit records who allowed it in
landing.mass_delete_override, in the load's own transaction.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

import psycopg
from psycopg import sql

from orchestration.districts.registry import District, RegistryError
from orchestration.warehouse.setup import WRITE_ROLE

SHARE_VARIABLE = "ATTENDANCE_MAX_DELETE_SHARE"
MIN_ROWS_VARIABLE = "ATTENDANCE_MASS_DELETE_MIN_ROWS"
DEFAULT_MAX_SHARE = 0.5
DEFAULT_MIN_ROWS = 20
FLAG = "--allow-mass-delete"

OVERRIDE_TABLE_SQL = """
create table if not exists landing.mass_delete_override (
    override_id bigint generated always as identity primary key,
    batch_id bigint not null references landing.load_batch,
    district_code text not null,
    table_name text not null,
    live_rows bigint not null,
    deleted_rows bigint not null,
    limit_share numeric not null,
    allowed_by text not null,
    db_user text not null,
    os_user text,
    recorded_at timestamptz not null default clock_timestamp()
)
"""


class GuardSettingError(RegistryError):
    """A malformed guard setting in the environment: a configuration error, reported like the registry's."""


def _env_number(name: str, default: float, *, integer: bool) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if value < 0 or (not integer and value > 1):
        wanted = "a whole number of rows (0 or more)" if integer else "a share between 0 and 1, e.g. 0.5"
        raise GuardSettingError(f"environment variable {name}={raw!r} is not {wanted}")
    return value


def global_max_share() -> float:
    return _env_number(SHARE_VARIABLE, DEFAULT_MAX_SHARE, integer=False)


def min_rows() -> int:
    return int(_env_number(MIN_ROWS_VARIABLE, DEFAULT_MIN_ROWS, integer=True))


@dataclass(frozen=True)
class TableDeletes:
    table: str
    live: int
    deleted: int

    def above(self, share: float, floor: int) -> bool:
        return self.deleted >= max(floor, 1) and self.deleted > share * self.live


@dataclass(frozen=True)
class Allowance:
    """A deletion above the global limit that an override let through, to be recorded."""

    deletes: TableDeletes
    limit: float
    allowed_by: str


class MassDeleteRefused(Exception):
    def __init__(self, deletes: TableDeletes, limit: float, limit_source: str) -> None:
        self.deletes = deletes
        share = deletes.deleted / deletes.live if deletes.live else 1.0
        super().__init__(
            f"the load would delete {deletes.deleted:,} of {deletes.live:,} live rows ({share:.0%}, limit "
            f"{limit:.0%}{limit_source}); if this is intended, rerun with {FLAG} (resync: the same flag, or "
            "allow_mass_delete in the job's config) or set allow_mass_delete: true for the district in the registry")


@dataclass(frozen=True)
class DeleteGuard:
    """The limits for one district's load and what, if anything, lifts them."""

    district: District
    global_share: float
    floor: int
    allowed_by: str | None  # the operator's explicit override for this run (flag, job config), if any

    @classmethod
    def for_district(cls, district: District, allowed_by: str | None) -> DeleteGuard:
        return cls(district, global_max_share(), min_rows(), allowed_by)

    def check(self, deletes: TableDeletes) -> Allowance | None:
        """None when within the limits; an Allowance to record when an override let it through."""
        own_share = self.district.max_delete_share
        limit = own_share if own_share is not None else self.global_share
        if deletes.above(limit, self.floor):
            if self.allowed_by:
                return Allowance(deletes, limit, self.allowed_by)
            if self.district.allow_mass_delete:
                return Allowance(deletes, limit, "registry allow_mass_delete")
            source = " set by the district's max_delete_share" if own_share is not None else ""
            raise MassDeleteRefused(deletes, limit, source)
        if deletes.above(self.global_share, self.floor):
            return Allowance(deletes, self.global_share, f"registry max_delete_share {own_share}")
        return None


def ensure_override_table(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("set local role {}").format(sql.Identifier(WRITE_ROLE)))
    conn.execute(OVERRIDE_TABLE_SQL)
    conn.execute("reset role")


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def record_allowance(conn: psycopg.Connection, batch_id: int, district_code: str, allowance: Allowance) -> None:
    # session_user, not current_user: the load runs `set local role attendance_write`.
    conn.execute(
        "insert into landing.mass_delete_override (batch_id, district_code, table_name, live_rows, deleted_rows, "
        "limit_share, allowed_by, db_user, os_user) values (%s, %s, %s, %s, %s, %s, %s, session_user, %s)",
        (batch_id, district_code, allowance.deletes.table, allowance.deletes.live, allowance.deletes.deleted,
         allowance.limit, allowance.allowed_by, _os_user()))
