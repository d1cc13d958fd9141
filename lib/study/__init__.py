"""The study: does this implementation show the papers' effects, with statistics instead of single runs?

- design: the configurations (params.yaml plus `-S` settings), the claims (two configurations compared
  on the same seeds and data) and the controlled experiments, and what is reported of a run;
- records: the committed record of finished runs (one JSON line each), what identifies a run's
  configuration, and how records of earlier versions are read under today's params;
- runner: one run of the pipeline with settings, in a copy of the workspace, by DVC's public commands
  (`python -m stages.study` and `python -m stages.seeds` run through it);
- stats: paired differences, their 95 % Student-t intervals, verdicts, means over seeds;
- tables, tuning: the markdown tables (reports/fidelity.md, methods.md, ablations.md, outside.md,
  tuning.md, seeds.md); figures: the forest plot of the claims (reports/figures/study.png).
"""
