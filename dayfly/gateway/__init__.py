"""HTTP: the Lambda-compatible API, the invoke path, dayfly's own endpoints, error shapes."""
