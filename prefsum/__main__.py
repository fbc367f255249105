from prefsum.cli import main

raise SystemExit(main())
