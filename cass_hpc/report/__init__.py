"""The collector's library: results.json records in, the CASS paper's tables, comparisons and
plots out (``python -m cass_hpc.collect`` is the command line around it).

One concept per module, all pure except :mod:`.plots` (files) and :mod:`.records` (reading):

- :mod:`.records`   find and parse results.json (+ the cell's state.json overrides), deduplicate;
- :mod:`.settings`  which configuration keys a grid sweeps (the ablations of App. C/D);
- :mod:`.format`    numbers, durations, row labels and paper order;
- :mod:`.tables`    mean ± variance over seeds, the results table (paper Tables 2-5), best cells;
- :mod:`.stats`     the 95 % t-interval of a mean and the paired test of two samples (numbers);
- :mod:`.paired`    CASS against each baseline, paired by replicate (split_seed, seed);
- :mod:`.arms`      both arms together (§6): the arm chosen on validation, the CNN + ViT ensemble;
- :mod:`.per_class` per-class test metrics (results.json ``per_class``) over replicates;
- :mod:`.ablations` ablation tables in the layout of App. C/D;
- :mod:`.timing`    pretraining wall time and paper Table 1 (DINO CNN+ViT vs CASS, ratio);
- :mod:`.knn_start` each net's k-NN score start → end of pretraining, and the nets it made worse;
- :mod:`.gains`     the gain per label fraction as App. G.0.3 computes it;
- :mod:`.paper`     the paper's values (shipped as ``paper_values.csv``/``paper_times.csv``),
                    dataset recognition, the metric per dataset, ours beside the paper's;
- :mod:`.render`    Markdown, LaTeX (booktabs), rich and CSV output of a table;
- :mod:`.plots`     PNG charts (matplotlib, Agg backend);
- :mod:`.build`     everything above for a set of records, as one :class:`~.build.Report`.
"""
