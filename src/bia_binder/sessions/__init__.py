"""Session backends: resource profiles, admission, the local sandbox (uid, bubblewrap, cgroups, disks) and its spawner."""
