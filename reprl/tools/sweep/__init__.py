"""Hyperparameter sweeps with Optuna: ``reprl sweep experiment=... sweep=SPEC``.

- :mod:`reprl.tools.sweep.spec`: the search space and settings (YAML), validated on load; no
  Optuna needed.
- :mod:`reprl.tools.sweep.trial`: one trial as a ``reprl train`` process, its metrics read while
  it runs, stopped cleanly when pruned.
- :mod:`reprl.tools.sweep.study`: the Optuna side: distributions, sampler, pruner, the study in
  its storage (SQLite in the sweep folder, or any database URL), stale trials retried.
- :mod:`reprl.tools.sweep.sweep`: ``reprl sweep``: validate once, run trials in parallel with
  pruning, resume, and write the results.
- :mod:`reprl.tools.sweep.report`: ``trials.csv``, ``best.yaml`` and the printed table.
- :mod:`reprl.tools.sweep.options`: the command line (for :mod:`reprl.cli`).

Nothing heavy is imported here; Optuna is imported only when a sweep runs.
"""
