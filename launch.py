"""CausalMix command line from a checkout: `python launch.py SUBCOMMAND --help`, the form
`ray job submit --working-dir . -- python launch.py SUBCOMMAND ...` and the cluster image run.
It is the installed `causalmix` command (causalmix/launch.py)."""
import sys

from causalmix.launch import main

if __name__ == "__main__":
    sys.exit(main())
