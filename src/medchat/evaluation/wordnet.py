"""WordNet for METEOR, offline: nltk's own data, or the files of Debian's WordNet 3.0 packages.

`nltk.download("wordnet")` needs a host that offline machines cannot reach, while Debian's packages
`wordnet-base` and `wordnet-sense-index` ship the same WordNet 3.0 database in /usr/share/wordnet. nltk
reads it once the files are copied into `<nltk_data>/corpora/wordnet/` together with a `lexnames` file,
which Debian keeps only as a man page (its table is LEXNAMES below).

    python -m medchat.evaluation.wordnet                    # where WordNet is found, or why it is not
    python -m medchat.evaluation.wordnet install .venv/nltk_data   # what scripts/setup.sh runs
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

DEBIAN_DIR = Path("/usr/share/wordnet")
# What nltk's WordNetCorpusReader opens, lexnames aside.
FILES = ("cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb", "data.adj",
         "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc")
# WordNet 3.0's lexicographer files, in file-number order (lexnames(5WN)).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive "
    "noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity "
    "noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition "
    "verb.communication verb.competition verb.consumption verb.contact verb.creation verb.emotion "
    "verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
INSTALL_HINT = ("apt-get install wordnet-base wordnet-sense-index (Debian/Ubuntu; scripts/setup.sh does it as "
                "root), or python -m nltk.downloader wordnet where nltk's host is reachable")


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def install(nltk_data: str | Path, source: str | Path = DEBIAN_DIR) -> Path:
    """Copy Debian's WordNet files into NLTK_DATA/corpora/wordnet (copies: nltk must see real files)."""
    source = Path(source)
    missing = [f for f in FILES if not (source / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} lacks WordNet files {', '.join(missing)}; {INSTALL_HINT}")
    target = Path(nltk_data) / "corpora" / "wordnet"
    tmp = target.with_name(".wordnet-partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in FILES:
        shutil.copyfile(source / name, tmp / name)
    (tmp / "lexnames").write_text(lexnames_text())
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _found() -> bool:
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        return False
    return True


def ensure_wordnet() -> str | None:
    """Make WordNet loadable by nltk. None when it is; otherwise the reason METEOR cannot be computed."""
    import nltk

    if not _found() and all((DEBIAN_DIR / f).is_file() for f in FILES):
        from medchat.tiny import cache_root

        nltk_data = cache_root() / "nltk_data"
        if not (nltk_data / "corpora" / "wordnet" / "lexnames").is_file():
            install(nltk_data)
        if str(nltk_data) not in nltk.data.path:
            nltk.data.path.append(str(nltk_data))
    if not _found():
        return f"WordNet is not installed (searched {', '.join(nltk.data.path)} and {DEBIAN_DIR}); {INSTALL_HINT}"
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
    except Exception as e:  # a damaged copy: say so instead of failing the whole evaluation
        return f"WordNet found but unreadable ({type(e).__name__}: {e}); {INSTALL_HINT}"
    return None


def main(argv: list[str]) -> int:
    if argv[:1] == ["install"] and len(argv) == 2:
        print(f"WordNet installed in {install(argv[1])}")
        return 0
    if argv:
        print(__doc__)
        return 2
    reason = ensure_wordnet()
    if reason:
        print(reason)
        return 1
    import nltk

    print(f"WordNet found: {nltk.data.find('corpora/wordnet')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
