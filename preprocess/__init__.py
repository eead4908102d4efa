"""Pack raw medical-image datasets into HDF5 shards: ``python -m preprocess <reader> SRC OUT``."""
