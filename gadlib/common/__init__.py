"""Plumbing shared by every subpackage: atomic files, progress bars, out-of-memory retries."""
