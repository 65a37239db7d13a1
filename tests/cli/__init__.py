"""The `attendance-sync` command line: its messages and exit statuses."""
