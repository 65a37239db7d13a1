"""Landing loads: copy, validate and diff each district's tables, and refuse bad input."""
