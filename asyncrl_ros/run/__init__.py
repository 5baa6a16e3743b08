"""Running it: config, profiles, the bringup, run folders and logs, comparison,
reproduction, bags, TensorBoard and launch-file support."""
