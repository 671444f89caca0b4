"""Table change streams: capture committed row changes in SQLite and PostgreSQL, deliver them in
order as DynamoDB-Streams-shaped batches (one ordered consumer per event source mapping)."""
