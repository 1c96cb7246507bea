"""Evaluation: what `python evaluate.py` runs, and the generation metrics logged during training.

One job per module (docs/evaluation.md has the commands and what every number means):
  config.py      evaluate.py's typed config schema and its checks
  plan.py        config -> what to load and where to write (the run opened by medchat.runs), the models
  heldout.py     the run's held-out rows, verified against split.json
  generation.py  batched, left-padded, EOS-aware generation
  metrics/       BLEU, ROUGE, METEOR, BERTScore as `evaluate` scripts loaded by path; wordnet.py for METEOR
  perplexity.py  perplexity of the reference answers (doctor tokens only)
  runner.py      task=generate: score each model; outputs.py writes predictions/metrics/summary
  mcq.py, mcq_data.py    task=mcq: MedQA / PubMedQA / MMLU scored by option log-likelihood
  callback.py    the training callback (eval.every_steps)
  _lib.py        the `evaluate` library, never the repository's evaluate.py
Importing this package is cheap: nothing heavy is imported here.
"""
