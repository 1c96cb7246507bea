"""Sweeps: the medchat Hydra launcher's machinery (job dirs, child processes, statuses).

The launcher itself is the Hydra plugin in src/hydra_plugins/medchat_launcher; the sweep report is
`python -m medchat.report SWEEP_DIR` (medchat/report.py, its plots in medchat/plots.py); a killed job's run
is closed by postmortem.py, which reads the run's config through medchat.runs. The whole workflow: docs/sweeps.md.
"""
