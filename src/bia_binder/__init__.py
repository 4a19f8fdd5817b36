"""bia-binder: a web-native compute service for bioimage analysis.

Deliberately import-free: ``bia_binder.data`` is put on the path of every session
environment, which has only the data dependencies, not the service's.
"""

__version__ = "0.1.0"
