# Shortcuts for the usual commands; run them from the repository root with the package installed (pip install -e .[dev]).
.PHONY: test bench demo lint

test:
	python -m pytest -n 2 -q

bench:
	a2gen bench

demo:
	a2gen demo

lint:
	ruff check src tests examples benchmarks
