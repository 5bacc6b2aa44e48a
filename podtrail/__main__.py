from podtrail.cli import main

raise SystemExit(main())
