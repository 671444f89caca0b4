"""Ways events reach functions besides a synchronous call: async invokes (and later buckets,
tables, schedules)."""
