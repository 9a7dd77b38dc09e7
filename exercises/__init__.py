"""Workshop exercises that check themselves: `make check EX=03.2`, `make solve EX=03.2`.

check.py is the command line; catalogue.py every exercise as data; checks/stageNN.py the checks of one
stage; common.py what they share; applied.py stage 05's apply-and-put-back; agenda.py the docs' figures.
"""
