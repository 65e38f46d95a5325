"""Operating the engine: the reconciler, retention, the doctor, metrics, the board, and beat's upkeep tasks."""
