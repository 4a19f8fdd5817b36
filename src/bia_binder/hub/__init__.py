"""The JupyterHub configuration bia-binder ships (``jupyterhub_config.py``)."""
