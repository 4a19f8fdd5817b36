"""Kubernetes deployment: the Helm chart's values made from the same config file ``bia-binder up`` reads.

- :mod:`.quantities`: byte counts as Kubernetes quantities (``8Gi``, never ``8G``, which Kubernetes reads as 10⁹);
- :mod:`.settings`: :class:`KubernetesDeployment`, what only a cluster needs (host, registry, secrets' names...);
- :mod:`.values`: :func:`chart_values`, the values of ``deploy/helm/bia-binder``;
- :mod:`.validate`: checks of generated values against the z2jh chart's schema (and mistakes it lets through);
- :mod:`.hub`: what the hub pod runs from ``hub.extraConfig`` (spawner, temporary users, routing);
- :mod:`.cli`: ``bia-binder kubernetes values``.
"""
