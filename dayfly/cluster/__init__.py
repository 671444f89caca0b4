"""Cluster mode: settings, the node's NATS connection, leases (one runner per source) and
membership (live nodes and their adverts); `wiring` picks single-node or cluster backends."""
