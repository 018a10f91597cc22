"""`python -m atalaia.tune ...`: the same as `atalaia tune ...` (a distributed worker's entry point)."""

from atalaia.tune.cli import main

main()
