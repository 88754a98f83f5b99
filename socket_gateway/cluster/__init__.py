"""Many gateways as one, on Redis: counts, leases and fencing across nodes."""
