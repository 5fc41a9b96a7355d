"""What the stage notebooks share about this project, none of which a library user of GAD needs:
:mod:`~gadlib.project.params` (params.yaml, validated), :mod:`~gadlib.project.paths` (where files are),
:mod:`~gadlib.project.classifier`, :mod:`~gadlib.project.supports` (an experiment's models, and GAD
with params.yaml's settings) and :mod:`~gadlib.project.maps` (the saved maps and their regions)."""
