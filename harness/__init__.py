"""One harness for every layer: start it, load it, break it, upgrade it, measure it.

Used by the tests, the notebooks and `make scorecard`, so every figure in this
repository comes from the same code and the same client.
"""
