import sys

from vivified.core.probe import main

sys.exit(main())
