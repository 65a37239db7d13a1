"""The demo: generated district databases and simulated school days."""
