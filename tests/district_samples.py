"""Moved to tests/support/districts.py; kept until move_tests.py has rewritten the imports of this module."""

from tests.support.districts import SAMPLE_ROWS, create_district_database, query, scalar  # noqa: F401
