"""Development and operations tooling, apart from the runtime: the native local stack
(`stack`), the demo scenario (`scenario`), recordings and replays (`replay`) and the benchmarks
(`bench`). The runtime never imports it (`tests/test_layout.py` checks)."""
