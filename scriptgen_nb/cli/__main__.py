"""`python -m scriptgen_nb.cli`: the `scriptgen` command."""

from . import main

raise SystemExit(main())
