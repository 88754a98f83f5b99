"""The support kit the tests and the benchmarks share: waiting, percentiles, seeding, starting services."""
