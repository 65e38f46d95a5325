"""The engine's moves: starting instances, the workers' door, what an ended attempt makes happen, control operations."""
