"""Plumbing shared by every subpackage: atomic files, progress bars, batched loops that survive running
out of memory, eval mode, and the checks of what users pass in."""
