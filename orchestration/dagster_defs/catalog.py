"""How the warehouse is presented in the Dagster catalog: asset keys and groups of the dbt sources.

An analyst reads the catalog as districts -> landing -> state -> reports:
- `districts/registry` is landing.district, the districts the state holds (from the registry file);
  state.district is built from it. It is written by the loads and the registry sync, never by a run of
  its own, so it is an external asset;
- `landing/<table>` are the district tables of the contract, loaded per district (landing_assets.py);
- `state/<model>` and `reports/<model>` are the dbt models (dbt_assets.py);
- `monitoring/sync_status` is the sync status (sync_status.py).
The loader's and dbt's own bookkeeping (load batches, logs, failures, superseded row images, model
builds) is not district data: it is kept apart in the `bookkeeping` group, unpartitioned and external,
so it does not sit beside the real tables or invite a "materialize".
"""

# No `from __future__ import annotations`: Dagster reads definitions' types at runtime.
from collections.abc import Mapping
from typing import Any

from dagster import AssetKey, AssetSpec

from orchestration.districts.contract import TABLES

DISTRICTS_GROUP = "districts"
LANDING_GROUP = "landing"
BOOKKEEPING_GROUP = "bookkeeping"
DISTRICTS_KEY = AssetKey([DISTRICTS_GROUP, "registry"])

_DISTRICT_TABLES = frozenset(spec.name for spec in TABLES)


def source_key(schema: str, name: str) -> AssetKey:
    """The catalog key of the dbt source `schema.name`."""
    if schema == "landing" and name in _DISTRICT_TABLES:
        return AssetKey([LANDING_GROUP, name])
    if schema == "landing" and name == "district":
        return DISTRICTS_KEY
    return AssetKey([BOOKKEEPING_GROUP, name])


def source_group(schema: str, name: str) -> str:
    return source_key(schema, name).path[0]


def catalog_specs(dbt_manifest: Mapping[str, Any]) -> list[AssetSpec]:
    """External assets for the dbt sources no run materializes: the districts and the bookkeeping."""
    specs = []
    for source in dbt_manifest["sources"].values():
        key = source_key(source["schema"], source["name"])
        if key.path[0] == LANDING_GROUP:
            continue  # materialized by the landing loads
        relation = f"{source['schema']}.{source['name']}"
        if key == DISTRICTS_KEY:
            description = (f"The districts of the state ({relation}): code, name and source of every district "
                           "loaded at least once, and whether the registry file still lists it. Kept in step "
                           "with the registry by every load and build; state.district is built from it.")
        else:
            description = (f"Bookkeeping ({relation}), not district data: "
                           + " ".join(str(source.get("description") or "").split()))
        specs.append(AssetSpec(key, group_name=key.path[0], description=description, kinds={"postgres"}))
    return specs

