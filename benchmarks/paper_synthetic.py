"""The paper's synthetic experiment over 5 seeds (same as `nwb-facrnn benchmark synthetic`).

Writes results/benchmark/synthetic_benchmark.{csv,png,md} and prints the table.
Run: ``.venv/bin/python benchmarks/paper_synthetic.py [--seeds 0-4]``.
"""

import sys

from nwb_facrnn.cli import main

if __name__ == "__main__":
    main(["benchmark", "synthetic", *sys.argv[1:]])
