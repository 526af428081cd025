"""Model-server entry points for engines that run replicas inside another framework (Ray Serve)."""
