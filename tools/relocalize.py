#!/usr/bin/env python
"""Same as `relocnet relocalize ...` (the console script), for a checkout without `pip install`:

    python tools/relocalize.py --query Q.mp4 --reference R.mp4 --weights W --output DIR
"""
import sys

from relocnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["relocalize", *sys.argv[1:]]))
