"""Standard-library helpers copied into every builtin's bundle (S3 client, egress, keys)."""
