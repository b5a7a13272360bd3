"""What a record shows: Markdown sections and pandas frames, below every package that displays something."""
