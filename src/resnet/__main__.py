from resnet.cli.main import main

raise SystemExit(main())
