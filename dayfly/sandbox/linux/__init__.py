"""The `linux` tier: zygotes in prepared namespaces, instances in fresh user/pid/mount/ipc/uts
namespaces with per-instance cgroups, no capabilities and a seccomp filter.
The privileged calls themselves live in dayfly/runtime/jail.py."""
