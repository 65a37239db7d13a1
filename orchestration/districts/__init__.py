"""Districts: the registry, the data contract and the sources a district's tables are read from."""
