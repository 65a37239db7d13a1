"""A small, hand-written district database with every contract table, for loader and model tests."""

from __future__ import annotations

from typing import Any

from orchestration.districts.contract import TABLES, create_table_sql
from orchestration.districts.registry import District
from orchestration.warehouse import database

SAMPLE_ROWS = """
insert into school values (1, '101', 'North Elementary', 'S101'), (2, '201', 'Central High', 'S201');
insert into school_year values (2027, '2026-27', true);
insert into calendar values
    (10, 1, 2027, 'North 26-27', '2026-08-24', '2027-05-28', null, null, false, '2026-08-01 08:00'),
    (20, 2, 2027, 'Central 26-27', '2026-08-24', '2027-05-28', 240, 120, false, '2026-08-01 08:00');
insert into period_schedule values (11, 10, 'AM/PM'), (21, 20, 'Regular'), (22, 20, 'Early release');
insert into period values
    (111, 11, 'AM', 1, '08:00', '11:30', 210, false), (112, 11, 'PM', 2, '12:30', '15:00', 150, false),
    (211, 21, 'P1', 1, '08:00', '09:00', 60, false), (212, 21, 'P2', 2, '09:05', '10:05', 60, false),
    (213, 21, 'Lunch', 3, '10:05', '10:35', 30, true), (214, 21, 'P3', 4, '10:40', '11:40', 60, false),
    (221, 22, 'P1', 1, '08:00', '08:40', 40, false), (222, 22, 'P2', 2, '08:45', '09:25', 40, false);
insert into day values
    (1001, 10, '2026-09-01', 11, true, true, null, '2026-08-01 08:00'),
    (1002, 10, '2026-09-02', 11, true, true, null, '2026-08-01 08:00'),
    (1003, 10, '2026-09-03', null, false, false, 'Holiday', '2026-08-01 08:00'),
    (2001, 20, '2026-09-01', 21, true, true, null, '2026-08-01 08:00'),
    (2002, 20, '2026-09-02', 22, true, true, 'Early release', '2026-08-01 08:00');
insert into person values
    (1, 'ST0001', '1001', 'Rivera', 'Ana', '2017-03-02', 'F', '2026-08-01 08:00'),
    (2, 'ST0002', '1002', 'Chen', 'Bo', '2010-11-20', 'M', '2026-08-01 08:00'),
    (3, null, '1003', 'Okafor', 'Chi', '2010-05-05', 'F', '2026-08-01 08:00');
insert into enrollment values
    (1, 1, 10, '03', '2026-08-24', null, 'P', false, '2026-08-01 08:00'),
    (2, 2, 20, '10', '2026-08-24', null, 'P', false, '2026-08-01 08:00'),
    (3, 3, 20, '10', '2026-08-24', '2026-09-01', 'P', false, '2026-08-01 08:00');
insert into attendance_excuse values
    (31, 10, 'ILL', 'Illness', 'A', 'E', '01', true, '2026-08-01 08:00'),
    (32, 20, 'TRU', 'Truant', 'A', 'U', '02', true, '2026-08-01 08:00'),
    (33, 20, 'FLD', 'Field trip', 'A', 'X', '03', true, '2026-08-01 08:00');
insert into attendance values
    (501, 1, 10, 111, '2026-09-01', 'A', 'E', 31, null, null, '2026-09-01 09:00'),
    (502, 2, 20, 211, '2026-09-01', 'T', 'U', null, 45, 'late bus', '2026-09-01 09:00'),
    (503, 2, 20, 212, '2026-09-02', 'A', '', null, null, null, '2026-09-02 09:00'),
    (504, 3, 20, 214, '2026-09-01', 'A', 'U', 33, null, null, '2026-09-01 12:00');
insert into behavior_type values (41, 20, 'FGT', 'Fighting', 'Violence', 'V01', true);
insert into behavior_response_type values (51, 20, 'DET', 'Detention', 'R01', true);
insert into behavior_resolution_type values (61, 20, 'RES', 'Resolved', 'Z01', true);
"""


def create_district_database(name: str, *, rows: bool = True, skip_tables: tuple[str, ...] = ()) -> None:
    database.drop_database(name)
    database.ensure_database(name)
    with database.connect(name, autocommit=True) as conn:
        for spec in TABLES:
            if spec.name not in skip_tables:
                conn.execute(create_table_sql(spec, "public"))
        if rows:
            conn.execute(SAMPLE_ROWS)


def query(district: District, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of a statement run in a district's own database."""
    assert district.source.database
    with database.connect(district.source.database) as conn:
        return conn.execute(statement, params).fetchall()


def scalar(district: District, statement: str, params: Any = None) -> Any:
    return query(district, statement, params)[0][0]
