"""`python -m bench`: the same as `python -m bench.run`, so the Makefile and the test share one entry."""

from bench.run import main

if __name__ == "__main__":
    main()
