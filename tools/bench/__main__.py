"""`python -m vivified.bench`: what `vivified bench` runs."""

import sys

from vivified.bench._cli import main

sys.exit(main())
