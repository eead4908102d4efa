"""The speed harness (issue 15): ``python -m cass_hpc.bench`` measures the CASS pretraining step
against DINO's (P1), against its data loader (P2) and against the machine's matmul ceiling (P3);
``python -m cass_hpc.bench.gpu`` is the five-minute GPU check. Measured numbers: ``PERF.md``."""
