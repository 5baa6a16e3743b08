"""Facts and rules of the arms, free of ROS: specs, kinematics, the safety filter,
the reward, the camera and the target."""
