"""The control plane: registry of functions, versions and aliases; bundles; deploys. Off the data path."""
