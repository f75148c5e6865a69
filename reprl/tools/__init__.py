"""Tools for people around a training run, each a ``reprl`` subcommand on run folders and
checkpoints of any agent and env family: video, progression, play, inspect, plot, compare,
audit, sweep, export.

A tool module defines ``add_parser(sub)``, which adds its subparser to the ``reprl`` command
and sets ``fn`` (``args -> exit code``); heavy imports (pygame, matplotlib, optuna) stay
inside the functions so that ``reprl --help`` stays fast.
"""
