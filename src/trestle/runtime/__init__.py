"""Runs the user's model: lifecycle, concurrency, cancellation and streams."""
