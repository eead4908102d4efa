"""cass-hpc: Cross-Architectural Self-Supervision (CASS) as an HPC batch toolkit."""

__version__ = "0.1.0"
