"""Kept for test files that import the Redis fixture by its old name: it lives in weirtest.redis now."""

from weirtest.redis import RedisServer, RespError, encode, free_port  # noqa: F401
