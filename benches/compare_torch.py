"""rbe vs torch in one process: see rbe/bench.py. Same as `rbe bench`."""
import sys

from rbe.bench import main

if __name__ == "__main__":
    sys.exit(main())
