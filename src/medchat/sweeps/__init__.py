"""Sweeps: the medchat Hydra launcher's machinery (job dirs, child processes, statuses).

The launcher itself is the Hydra plugin in src/hydra_plugins/medchat_launcher; the report is
`python -m medchat.report SWEEP_DIR`. The whole workflow: docs/sweeps.md.
"""
