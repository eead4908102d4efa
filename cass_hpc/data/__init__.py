"""Packed datasets: the HDF5 shard format and seeded split selection."""
