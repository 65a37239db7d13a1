"""The district data contract (docs/domain.md, "District source data") as data.

Every piece that touches district tables reads this module: the demo generator creates them, the
landing loader validates and copies them, and the dbt sources describe the landing copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a PostgreSQL type name, also used for validation with pg_input_is_valid
    nullable: bool = True
    accepted: tuple[str, ...] = ()  # allowed values, when the column is a code


@dataclass(frozen=True)
class ForeignKey:
    column: str
    parent: str
    parent_column: str


@dataclass(frozen=True)
class Table:
    name: str
    primary_key: str
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    unique: tuple[tuple[str, ...], ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def parents(self) -> list[str]:
        return sorted({fk.parent for fk in self.foreign_keys if fk.parent != self.name})

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


def _key(name: str) -> Column:
    return Column(name, "integer", nullable=False)


STATUS_CODES = ("A", "T", "E")
EXCUSE_CODES = ("E", "U", "X", "")
SERVICE_TYPES = ("P", "S", "N")

# Listed parents first: loads validate and apply them in this order.
TABLES: tuple[Table, ...] = (
    Table("school", "school_id", (
        _key("school_id"), Column("number", "text"), Column("name", "text", nullable=False),
        Column("state_school_code", "text"),
    )),
    Table("school_year", "end_year", (
        _key("end_year"), Column("label", "text"), Column("active", "boolean", nullable=False),
    )),
    Table("calendar", "calendar_id", (
        _key("calendar_id"), _key("school_id"), _key("end_year"), Column("name", "text"),
        Column("start_date", "date", nullable=False), Column("end_date", "date", nullable=False),
        Column("whole_day_absence_minutes", "integer"), Column("half_day_absence_minutes", "integer"),
        Column("exclude", "boolean", nullable=False), Column("modified_date", "timestamp"),
    ), (ForeignKey("school_id", "school", "school_id"), ForeignKey("end_year", "school_year", "end_year"))),
    Table("period_schedule", "period_schedule_id", (
        _key("period_schedule_id"), _key("calendar_id"), Column("name", "text"),
    ), (ForeignKey("calendar_id", "calendar", "calendar_id"),)),
    Table("period", "period_id", (
        _key("period_id"), _key("period_schedule_id"), Column("name", "text"), Column("seq", "integer"),
        Column("start_time", "time"), Column("end_time", "time"),
        Column("period_minutes", "integer", nullable=False), Column("non_instructional", "boolean", nullable=False),
    ), (ForeignKey("period_schedule_id", "period_schedule", "period_schedule_id"),)),
    Table("day", "day_id", (
        _key("day_id"), _key("calendar_id"), Column("date", "date", nullable=False),
        Column("period_schedule_id", "integer"), Column("instruction", "boolean", nullable=False),
        Column("attendance", "boolean", nullable=False), Column("comments", "text"),
        Column("modified_date", "timestamp"),
    ), (ForeignKey("calendar_id", "calendar", "calendar_id"),
        ForeignKey("period_schedule_id", "period_schedule", "period_schedule_id")),
        unique=(("calendar_id", "date"),)),
    Table("person", "person_id", (
        _key("person_id"), Column("state_id", "text"), Column("student_number", "text"),
        Column("last_name", "text"), Column("first_name", "text"), Column("birth_date", "date"),
        Column("gender", "text"), Column("modified_date", "timestamp"),
    )),
    Table("enrollment", "enrollment_id", (
        _key("enrollment_id"), _key("person_id"), _key("calendar_id"), Column("grade", "text"),
        Column("start_date", "date", nullable=False), Column("end_date", "date"),
        Column("service_type", "text", nullable=False, accepted=SERVICE_TYPES),
        Column("no_show", "boolean", nullable=False), Column("modified_date", "timestamp"),
    ), (ForeignKey("person_id", "person", "person_id"), ForeignKey("calendar_id", "calendar", "calendar_id"))),
    Table("attendance_excuse", "excuse_id", (
        _key("excuse_id"), _key("calendar_id"), Column("code", "text", nullable=False),
        Column("description", "text"), Column("status", "text", nullable=False, accepted=STATUS_CODES),
        Column("excuse", "text", accepted=EXCUSE_CODES), Column("state_code", "text"),
        Column("active", "boolean", nullable=False), Column("modified_date", "timestamp"),
    ), (ForeignKey("calendar_id", "calendar", "calendar_id"),)),
    Table("attendance", "attendance_id", (
        _key("attendance_id"), _key("person_id"), _key("calendar_id"), _key("period_id"),
        Column("date", "date", nullable=False), Column("status", "text", nullable=False, accepted=STATUS_CODES),
        Column("excuse", "text", accepted=EXCUSE_CODES), Column("excuse_id", "integer"),
        Column("present_minutes", "integer"), Column("comments", "text"), Column("modified_date", "timestamp"),
    ), (ForeignKey("person_id", "person", "person_id"), ForeignKey("calendar_id", "calendar", "calendar_id"),
        ForeignKey("period_id", "period", "period_id"), ForeignKey("excuse_id", "attendance_excuse", "excuse_id"))),
    Table("behavior_type", "type_id", (
        _key("type_id"), _key("calendar_id"), Column("code", "text", nullable=False), Column("name", "text"),
        Column("category", "text"), Column("state_event_code", "text"), Column("active", "boolean", nullable=False),
    ), (ForeignKey("calendar_id", "calendar", "calendar_id"),)),
    Table("behavior_response_type", "response_type_id", (
        _key("response_type_id"), _key("calendar_id"), Column("code", "text", nullable=False),
        Column("name", "text"), Column("state_response_code", "text"), Column("active", "boolean", nullable=False),
    ), (ForeignKey("calendar_id", "calendar", "calendar_id"),)),
    Table("behavior_resolution_type", "resolution_type_id", (
        _key("resolution_type_id"), _key("calendar_id"), Column("code", "text", nullable=False),
        Column("name", "text"), Column("state_resolution_code", "text"),
        Column("active", "boolean", nullable=False),
    ), (ForeignKey("calendar_id", "calendar", "calendar_id"),)),
)

TABLES_BY_NAME: dict[str, Table] = {table.name: table for table in TABLES}


def table(name: str) -> Table:
    try:
        return TABLES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown district table {name!r}; known: {', '.join(TABLES_BY_NAME)}") from None


def create_table_sql(spec: Table, schema: str) -> str:
    """DDL for a district database's copy of a table (used by the demo generator and tests)."""
    columns = [f"{c.name} {c.type}{'' if c.nullable else ' not null'}" for c in spec.columns]
    columns.append(f"primary key ({spec.primary_key})")
    columns.extend(f"unique ({', '.join(cols)})" for cols in spec.unique)
    return f"create table {schema}.{spec.name} (\n    " + ",\n    ".join(columns) + "\n)"
