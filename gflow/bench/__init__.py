"""Built-in benchmarks behind `gflow bench NAME`.

Each module in `BENCHMARKS` defines `NAME`, `HELP`, `ENV` (the registered environment whose
options `gflow bench` adds to the benchmark's, or None), `add_arguments(parser)` for its own
options and `run(args) -> dict` that writes its results (results.json, plots) under `args.out`.
"""

BENCHMARKS: tuple[str, ...] = (
    "gflow.bench.mo_hypergrid",
    "gflow.bench.ngrams",
    "gflow.bench.dna_aptamers",
    "gflow.bench.seh_frag",
    "gflow.bench.seh_frag_moo",
)
"""`gflow bench NAME`: run a built-in benchmark and write its results under --out."""
