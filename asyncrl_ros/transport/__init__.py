"""How data moves between processes and to disk, free of ROS: shared memory
(segments, the batch ring, the weight store), host<->device copies, atomic files."""
