"""The reservation ledger in Redis, framework-free: what a counter, a cap and a rate window are
(types.py), the Lua that reserves, settles, expires and loads in one atomic step each
(scripts.py), and the client that runs it (redis_ledger.py). No Django: the benchmark and the
services bind it; services/ledger.py gives it the Postgres ledger it is rebuilt from."""
