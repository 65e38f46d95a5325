"""The database: its tables and migrations, the statements that move rows, and the hot path's store per dialect."""
