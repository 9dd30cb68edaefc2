"""`python -m pipelines`: the command line of the pipeline."""

from pipelines.cli import main

raise SystemExit(main())
