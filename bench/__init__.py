"""The benchmark harness behind `make bench` and `make bench-quick` (see bench/run.py).

It is a package so that the harness test can run it as `python -m bench` and so that the older
single-purpose scripts here can share its helpers; it is not installed with the proxy.
"""
