"""The grid's expensive steps, one module each: ``run(ctx, ..., run)`` computes one run into its
directory and returns its metrics (:func:`xlcore.runs.execute` records them). The grid
(:mod:`xlcore.grid`) plans which runs exist and binds each to its step."""
