from vlad_tui.cli import main

raise SystemExit(main())
