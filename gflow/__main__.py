"""`python -m gflow`: the `gflow` command."""

from gflow.cli import main

raise SystemExit(main())
