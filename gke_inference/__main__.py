from gke_inference.cli import main

raise SystemExit(main())
