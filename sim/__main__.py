import sys

from sim.cli import sim_main

sys.exit(sim_main(sys.argv[1:]))
