"""The engine's Celery side: the app, its configuration, signatures compiled from definitions, publishing."""
