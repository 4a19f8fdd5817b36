"""Federation: one gateway address in front of several bia-binder deployments (``bia-binder federation``).

Modules, one concept each: ``members`` (the deployments and their health), ``holdings`` (which member
already holds an environment), ``selection`` (which member runs a launch), ``proxy`` (streaming a
launch from a member, with failover), ``status`` (history and metrics), ``handlers`` and ``app``.
"""
