"""Config files a deployer might write, as `bia-binder up --config` reads them."""

DEFAULT = "c.KubernetesDeployment.host = 'binder.example.org'\n"

PROFILES = """
c.KubernetesDeployment.host = 'binder.embassy.example'
c.ResourceProfiles.anonymous = {"slug": "anonymous", "mem_limit": "4G", "cpu_limit": 2, "disk_limit": "5G"}
c.ResourceProfiles.logged_in = [
    {"slug": "small", "mem_limit": "8G", "cpu_limit": 2, "storage": "persistent"},
    {"slug": "medium", "mem_limit": "24G", "cpu_limit": 6, "storage": "persistent"},
    {"slug": "odd", "mem_limit": 1500000000, "cpu_limit": 0.5, "storage": "persistent"},
    {"slug": "huge", "mem_limit": "128G", "cpu_limit": 32, "storage": "persistent"},
]
c.HomeManager.quota = "20G"
c.Admission.max_sessions = 300
c.Admission.per_repo_quota = 50
c.BinderService.banner = "<b>Maintenance</b> on Friday"
c.GitHubProvider.api_url = "https://github.example.org/api/v3"
c.GitHubProvider.access_token = "ghp_not_for_values"
c.JupyterHub.services = [{"name": "idle-culler", "command": ["python", "-m", "jupyterhub_idle_culler",
    "--timeout=3600", "--max-age=86400", "--cull-every=300", "--concurrency=5"]}]
"""

GPU = """
c.KubernetesDeployment.host = 'gpu.binder.example.org'
c.KubernetesDeployment.gpu_node_selector = {"cloud.example/accelerator": "a100"}
c.KubernetesDeployment.gpu_tolerations = [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
c.KubernetesDeployment.data_endpoints = [{"cidr": "10.20.0.0/24", "ports": [443, 9000]}]
c.KubernetesDeployment.storage_class = "fast-rwo"
c.KubernetesDeployment.user_placeholders = 4
c.ResourceProfiles.logged_in = [
    {"slug": "standard", "mem_limit": "16G", "cpu_limit": 4, "storage": "persistent"},
    {"slug": "gpu", "mem_limit": "64G", "cpu_limit": 16, "gpus": 2, "storage": "persistent"},
]
c.GenericOAuthenticator.client_id = "bia-binder"
c.GenericOAuthenticator.client_secret = "never-in-values"
c.GenericOAuthenticator.allowed_users = {"alice@lifescience-ri.eu"}
c.Authenticator.admin_users = {"admin@lifescience-ri.eu"}
"""

ALL = {"default": DEFAULT, "profiles": PROFILES, "gpu": GPU}
