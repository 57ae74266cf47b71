"""Studies (`gcpo study`): named claims about arms of training runs, planned before they are paid for, run in
resumable pieces and reported in words.

- `gcpo.studies.study_file`: the study file (`studies/*.yaml`): claims, arms, factorial grids, seeds, budget.
- `gcpo.studies.method`: the statistics (pure numpy/scipy): planning (minimum detectable difference, seeds
  needed), Holm's adjustment, verdict words, factorial effects, the repeated-looks rule.
- `gcpo.studies.analysis`: one claim's tables from a comparison's runs and per-item results (pure pandas).
- `gcpo.studies.runner`: the pieces (one arm x one seed, a narrowed `gcpo.sweeps.runner.run_sweep`), their
  balanced order, the study's progress and ETA, `--until-decided`.
- `gcpo.studies.report`: the study's markdown report, CSV files and figures.

The method is written out in docs/studies.md.
"""
