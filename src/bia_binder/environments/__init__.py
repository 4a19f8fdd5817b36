"""Environments the service ships ready-made (the default bioimage environment of logged-in users)."""
