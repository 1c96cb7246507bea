"""Evaluation: what `python evaluate.py` runs, and the generation metrics logged during training.

One job per module (docs/evaluation.md has the commands and what every number means):
  config.py      evaluate.py's typed config schema and its checks
  plan.py        config -> what to load and where to write (the run opened by medchat.runs), the models
  heldout.py     the run's held-out rows (read by medchat.runs), verified against split.json; rows.path= rows
  generation.py  batched, left-padded, EOS-aware generation
  metrics/       BLEU, ROUGE, METEOR, BERTScore as `evaluate` scripts loaded by path; wordnet.py for METEOR
  perplexity.py  perplexity of the reference answers (doctor tokens only)
  runner.py      task=generate: score each model; outputs.py writes predictions/metrics/summary
  intervals.py   95% bootstrap intervals over rows and paired base-vs-adapter differences
  compare.py     paired differences between two evaluations of the same rows (python -m ...compare)
  locate.py      which of a run's evaluation folders a summary quotes (the full held-out one)
  mcq.py, mcq_data.py    task=mcq: MedQA / PubMedQA / MMLU scored by option log-likelihood (acc, acc_norm)
  lmeval_tasks.py        lm-evaluation-harness task configs over the same local files (the agreement test)
  callback.py    the training callback (eval.every_steps)
  _lib.py        the `evaluate` library, never the repository's evaluate.py
Importing this package is cheap: nothing heavy is imported here.
"""
