"""``python -m arkor`` runs the CLI."""

from arkor.cli.main import main

main()
