"""Workshop exercises that check themselves: `make check EX=03.2`, `make solve EX=03.2` (see check.py)."""
