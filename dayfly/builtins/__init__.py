"""Prebuilt functions: ordinary dayfly function folders (image_transform/, notify/, compress/,
sharing _lib/) with host-side validators that turn a configuration into a deployable bundle."""
