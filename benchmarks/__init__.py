"""Benchmarks of issue 6 (plain scripts, not tests): detection throughput, elimination wall time,
training throughput. Run ``python benchmarks/bench_<name>.py --help``; CSVs land in
``results/<profile>/<dataset>/bench_<name>.csv`` for the table5 notebook."""
