from lsp_mlx.cli import main

raise SystemExit(main())
