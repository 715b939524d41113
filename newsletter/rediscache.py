"""Django's Redis cache, with one Redis client per connection pool.

Django's RedisCacheClient builds a new redis.Redis around its pool for every cache
call, which costs more CPU than the round trip to Redis itself, and a good part of
what counting a click (/r/<token>/) costs. A redis.Redis is thread-safe
and only borrows connections from its pool, so one per pool serves every call.
"""

from django.core.cache.backends import redis as django_redis


class _RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients = {}  # id of a pool (kept for good in _pools) -> redis.Redis

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = _RedisCacheClient
