"""The benchmark: load and build speed side by side, written as a report."""
