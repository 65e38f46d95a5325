"""What a workflow is: definitions, calendars, durations and names, validated data that knows no database."""
