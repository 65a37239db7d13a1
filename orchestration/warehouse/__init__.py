"""The warehouse: connections, the embedded server, setup, tool rights and the writer lock."""
