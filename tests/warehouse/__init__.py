"""The warehouse: the embedded server, logins, passwords and rights, the writer lock."""
