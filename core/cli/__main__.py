from vivified.core.cli import main

raise SystemExit(main())
