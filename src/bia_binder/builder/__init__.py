"""The environment builder (repo2docker's rules, uv and rattler instead of containers), its cache, and
the container builder (repo2docker) for what needs an image."""

from .base import Environment, LogFn, cache_key
from .builder import EnvBuilder
from .cache import EnvCache
from .container import ContainerBuilder

__all__ = ["ContainerBuilder", "EnvBuilder", "EnvCache", "Environment", "LogFn", "cache_key"]
