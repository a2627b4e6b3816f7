from arnn.cli import main

raise SystemExit(main())
