"""The login portal: authentication, persistent homes, culling, Dask, rclone, user administration."""
