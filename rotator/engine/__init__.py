"""The rotation engine: the checkpointed state machine, its steps and its records."""
