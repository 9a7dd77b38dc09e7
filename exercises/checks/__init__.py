"""The checks, one module per stage: each function takes the folder to check and returns, or raises Fail."""
