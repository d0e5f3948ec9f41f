"""Command-line entry points (thin: parse arguments, call the library). ``tools/*.py`` wrap these."""
