"""Code the tests share and only the tests use: a port of Continue's request
building (continue_port), the subset of Go's text/template that Ollama's templates
use (gotemplate), and the network guard every test process can run under
(network_guard, netguard/). The corpus novels cut into chunk files, which the
benchmarks use too, live beside the benchmarks (fine-tuning/benchmarks/corpus_chunks.py;
pytest.ini puts that folder on the tests' import path)."""
