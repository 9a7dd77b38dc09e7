"""gunicorn's defaults: a config module with no settings in it.

harness.local.GunicornWithoutConfig starts gunicorn with `--config python:harness.gunicorn_defaults`,
because gunicorn otherwise reads ./gunicorn.conf.py from the folder it starts in (the stage's own).
"""
