"""Landing loads: copy, validate and diff each district's tables into schema landing."""
