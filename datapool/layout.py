"""The names of a built pool's parts on disk: what the builder (build.py) writes and the reader
(pool.py) opens, in a module of their own so that `pool info` reads a pool without importing
the builder and pandas."""

POOL_INDEX = "pool.json"
POOL_PARTS = ("shards", "dev", POOL_INDEX)
"""What a build writes into its folder (replaced whole): the pool's own parts."""
