"""Districts: the registry and the identity of district codes."""
