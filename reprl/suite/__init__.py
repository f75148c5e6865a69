"""Benchmark suites: many independent runs of one experiment, scored by a protocol.

``reprl suite atari100k agent=der seeds=3 --out runs/der100k`` trains every game x seed of
the Atari-100k protocol in parallel processes, evaluates each final agent, and writes the
per-game table with human-normalised scores and their aggregates (mean, median, IQM with
stratified bootstrap confidence intervals, Agarwal et al. 2021).

- :mod:`reprl.suite.runner`: generic parallel job runner (subprocesses, resume from
  checkpoints, logs per run, failures reported, Ctrl-C handled); reusable for any chain of
  reprl runs (``after=``: pretrain -> probe -> finetune).
- :mod:`reprl.suite.worker`: one run in its own process: train, score, write ``result.json``.
- :mod:`reprl.suite.aggregate`: normalised scores, rliable aggregates, tables and the plot.
- :mod:`reprl.suite.protocol`: what a protocol is; the ``SUITES`` registry.
- :mod:`reprl.suite.atari100k`: the Atari-100k protocol and the ``pretrain`` pipeline over
  its games.
- :mod:`reprl.suite.pipeline`: ``reprl suite pretrain``: per game pretrain -> probe, then
  finetune per seed from that backbone (jobs chained with ``after=``), one table.
- :mod:`reprl.suite.suite`: ``reprl suite``: validate once, run, aggregate.

Nothing heavy is imported here: the worker process imports this package first.
"""
