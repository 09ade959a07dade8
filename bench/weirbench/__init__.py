"""weir's benchmark as a package: the shared parts (common: run context, paths, CSV and formatting; procs: /proc
sampling; servers: weir, the peers, stock h2o, redis-server; load: ab, h2load and their parsers; report: tables,
figures, RESULTS.md), one module per experiment (expN_*.py) and the registry that orders them. bench/bench.py is the
entry point; bench/README.md says how to add an experiment."""
