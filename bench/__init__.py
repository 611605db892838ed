"""The benchmark, on the local stack, in one run: catch-up throughput of the
three workers on a backlog, freshness at steady rates, their memory and CPU, side by
side with the naive baseline (:mod:`bench.baseline`) and the PostgreSQL floor
(:mod:`bench.floor`).

``python -m bench --help`` lists the options; docs/PERFORMANCE.md explains every figure.
This package is a tool of the project, never imported by the product.
"""
