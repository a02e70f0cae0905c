"""The demo and the small LSP client it (and the benchmarks) use to talk to ``nearline serve``."""
