"""Run an image's own process in runc, traced by strace, and drive it with probes."""
