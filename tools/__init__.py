"""The project's own scripts (the stage runner, data fetch, timings, README numbers, run comparison,
open questions), run by the Makefile and dvc.yaml; not part of the gadlib package."""
