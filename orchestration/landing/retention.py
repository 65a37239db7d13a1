"""How long landing.superseded_row keeps a previous row image: until every model has incorporated its batch.

An incremental model reads the superseded images of the landing batches after the horizon it last
recorded in state.model_build (per model and district), so an image whose batch is at or below every
recorded horizon of its district is never read again. A district none of whose models recorded a horizon
(never built, or a model whose build found no batch) keeps every image; a model built later for the first
time builds that district whole and needs no image. Pruned after every landing run (load_districts).
"""

from __future__ import annotations

import psycopg

_PRUNE = """
delete from landing.superseded_row as superseded
using (
    select district_code, min(landing_batch_id) as horizon
    from state.model_build
    where %(district)s::text is null or district_code = %(district)s
    group by district_code
    having count(landing_batch_id) = count(*)
) as incorporated
where superseded.district_code = incorporated.district_code
    and superseded.batch_id <= incorporated.horizon
"""


def prune_superseded_rows(conn: psycopg.Connection, district_code: str | None = None) -> int:
    """Delete the images every model of their district (or of `district_code` only) has incorporated;
    return how many went."""
    exists = conn.execute("select to_regclass('state.model_build') is not null "
                          "and to_regclass('landing.superseded_row') is not null").fetchone()
    if not (exists and exists[0]):
        return 0  # nothing built yet: every image may still be needed
    return conn.execute(_PRUNE, {"district": district_code}).rowcount
