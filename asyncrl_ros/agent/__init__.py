"""The learning agent, free of ROS: SAC, its networks, augmentation and the replay."""
