"""Where and when learning happens, free of ROS: the mode registry, the policy's
learning backends, batch sources, the episode runner, checkpoints, evaluation."""
