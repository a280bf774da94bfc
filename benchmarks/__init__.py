"""xmodal's benchmarks, one command: ``python -m benchmarks <command>`` from the repository root.

Commands: ``quality`` (every model and variant on every dataset it has a config for: RESULTS.md,
REPRODUCTION.md), ``speed`` (SPEED.md), ``search`` (results/search.md), ``cache``
(results/cache.md), ``startup`` (results/startup.md), ``zero-shot`` (results/zero-shot.md),
``first-stage`` (results/first-stage.md), ``synthetic`` (scan-precomputed data of any size) and
``probe NAME`` (measurements that explain a trained run). Every table is measured by the library
exactly as ``xmodal eval RUN --json`` is (:mod:`benchmarks.runner`).
"""
