"""Checks on a district database against the contract: used by the demo tests, handy for any district.

`integrity_problems` finds what the landing loader would reject (orphans, invalid codes, missing values);
`table_checksums` fingerprints every contract table, to prove two generations identical.
"""

from __future__ import annotations

from psycopg import sql

from orchestration.districts.contract import TABLES, TABLES_BY_NAME
from orchestration.warehouse import database


def table_checksums(dbname: str) -> dict[str, str]:
    """md5 of every contract table's rows in primary-key order."""
    checksums: dict[str, str] = {}
    with database.connect(dbname) as conn:
        for spec in TABLES:
            row = conn.execute(sql.SQL(
                "select coalesce(md5(string_agg(t::text, '|' order by t.{key})), '') from public.{table} as t"
            ).format(key=sql.Identifier(spec.primary_key), table=sql.Identifier(spec.name))).fetchone()
            checksums[spec.name] = row[0] if row else ""
    return checksums


def integrity_problems(dbname: str) -> list[str]:
    """Orphaned child rows, codes outside the contract's values, nulls in required columns."""
    problems: list[str] = []
    with database.connect(dbname) as conn:
        for spec in TABLES:
            table = sql.Identifier(spec.name)
            for fk in spec.foreign_keys:
                parent = TABLES_BY_NAME[fk.parent]
                row = conn.execute(sql.SQL(
                    "select count(*) from public.{child} as c where c.{column} is not null and not exists "
                    "(select from public.{parent} as p where p.{parent_column} = c.{column})"
                ).format(child=table, column=sql.Identifier(fk.column), parent=sql.Identifier(parent.name),
                         parent_column=sql.Identifier(fk.parent_column))).fetchone()
                if row and row[0]:
                    problems.append(f"{spec.name}.{fk.column}: {row[0]} row(s) without a {fk.parent}")
            for column in spec.columns:
                name = sql.Identifier(column.name)
                if not column.nullable:
                    row = conn.execute(sql.SQL("select count(*) from public.{} where {} is null").format(
                        table, name)).fetchone()
                    if row and row[0]:
                        problems.append(f"{spec.name}.{column.name}: {row[0]} null(s) in a required column")
                if column.accepted:
                    row = conn.execute(sql.SQL(
                        "select count(*) from public.{} where {} is not null and not ({} = any(%s))"
                    ).format(table, name, name), (list(column.accepted),)).fetchone()
                    if row and row[0]:
                        problems.append(f"{spec.name}.{column.name}: {row[0]} value(s) outside {column.accepted}")
    return problems
