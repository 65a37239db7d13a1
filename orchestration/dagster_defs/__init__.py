"""Dagster definitions for the attendance sync (assembled in `definitions.py`).

The submodules are kept free of side effects on import except `definitions`, which reads the district
registry and the dbt manifest to build the asset graph.
"""
