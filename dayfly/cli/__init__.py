"""The `dayfly` command: one module per command group, all talking to the HTTP API."""
