"""`synthtext`: a seeded synthetic text-classification corpus, offline.

What `mnist1d` is for signals: small, made on the spot, hard enough that
models and scores differ. Four topics (sport, science, cooking, travel).
Each sentence is one to several clauses from a small grammar (names, verbs,
adjectives, nouns, fillers); each content word comes from its topic's
vocabulary with probability `signal`, else from a shared neutral vocabulary
or another topic's. Three kinds of example:

- typical (70%): signal 0.6;
- ambiguous (15%): half the topic words come from one other topic, so the
  label is decided by a small majority;
- sparse (15%): signal 0.2, mostly neutral words.

The number of clauses is geometric, so lengths have a long tail (about 8 to
over 100 words). Label noise and imbalance come from the usual transforms
(`--label-noise`, `--long-tail`). 4,000 training and 1,000 test sentences;
the `kind` of each example is in `SYNTHTEXT_KINDS` order in `kinds(...)`.
"""

from __future__ import annotations

import numpy as np

from pruning.data.dataset import Dataset, make_dataset
from pruning.data.sources import register_source
from pruning.data.text import make_text_split

CLASSES = ("sport", "science", "cooking", "travel")
SYNTHTEXT_KINDS = ("typical", "ambiguous", "sparse")
NUM_TRAIN, NUM_TEST = 4000, 1000
SEED = 20231  # the corpus is fixed; transforms take their own seed

_TOPICS = {
  "sport": {
    "noun": "match goal team coach stadium league player referee season ball tournament striker keeper medal race"
    " trophy final pitch court racket".split(),
    "verb": "scored kicked won lost trained defended passed tackled coached raced".split(),
    "adj": "athletic fast defensive offensive unbeaten competitive muscular tired victorious".split(),
  },
  "science": {
    "noun": "experiment theory molecule laboratory hypothesis telescope cell protein particle equation data sample"
    " galaxy genome reactor microscope atom enzyme orbit".split(),
    "verb": "measured observed tested published analysed discovered calculated synthesised modelled cited".split(),
    "adj": "quantum molecular empirical peer-reviewed statistical genetic chemical theoretical cosmic".split(),
  },
  "cooking": {
    "noun": "recipe oven sauce garlic dough kitchen flavour spice butter onion soup pastry chef salad pepper"
    " broth skillet basil dessert".split(),
    "verb": "baked fried stirred roasted seasoned chopped simmered tasted whisked grilled".split(),
    "adj": "crispy savoury spicy tender delicious creamy sweet salty aromatic".split(),
  },
  "travel": {
    "noun": "flight hotel passport luggage airport beach journey itinerary ticket island museum train border"
    " tourist guide cruise visa harbour resort".split(),
    "verb": "booked flew visited explored packed toured boarded hiked checked sailed".split(),
    "adj": "exotic scenic remote crowded budget tropical coastal historic sunny".split(),
  },
}
_NEUTRAL = {
  "noun": "day people time thing week place idea group plan story moment friend city result way".split(),
  "verb": "saw liked found wanted discussed described noticed mentioned needed".split(),
  "adj": "new big small long old good early late usual".split(),
}
_NAMES = "Ana Ben Chen Dara Eli Farah Gus Hana Ivan Jules Kofi Lena Mo Nia Omar Pia".split()
_FILLERS = ["yesterday", "last week", "in the end", "as expected", "to everyone's surprise", "after a while", "again"]
_TEMPLATES = (
  "{name} {verb} the {adj} {noun}",
  "the {noun} was {adj} and the {noun} was {adj}",
  "{name} said the {noun} {verb} a {adj} {noun}",
  "{filler} , {name} {verb} the {noun}",
  "a {adj} {noun} near the {noun}",
  "we {verb} the {noun} with {name}",
)
_KIND_SIGNAL = {"typical": 0.6, "ambiguous": 0.6, "sparse": 0.2}


def _word(rng, part: str, topic: str, other: str | None, signal: float) -> str:
  draw = rng.random()
  if other is not None and draw < signal:  # ambiguous: half the topic words go to the other topic
    source = topic if rng.random() < 0.55 else other
    words = _TOPICS[source][part]
  elif draw < signal:
    words = _TOPICS[topic][part]
  elif draw < signal + 0.1:  # a stray word of a random topic
    words = _TOPICS[CLASSES[rng.integers(len(CLASSES))]][part]
  else:
    words = _NEUTRAL[part]
  return str(words[rng.integers(len(words))])


def _sentence(rng, label: int, kind: str) -> str:
  topic = CLASSES[label]
  other = CLASSES[(label + 1 + rng.integers(len(CLASSES) - 1)) % len(CLASSES)] if kind == "ambiguous" else None
  signal = _KIND_SIGNAL[kind]
  clauses = []
  for _ in range(int(rng.geometric(0.4))):  # 1, 2, ... clauses: a long tail of lengths
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
    words = []
    for token in template.split():
      if token.startswith("{") and token[1:-1] in ("noun", "verb", "adj"):
        words.append(_word(rng, token[1:-1], topic, other, signal))
      elif token == "{name}":
        words.append(str(_NAMES[rng.integers(len(_NAMES))]))
      elif token == "{filler}":
        words.append(_FILLERS[rng.integers(len(_FILLERS))])
      else:
        words.append(token)
    clauses.append(" ".join(words))
  return (" and ".join(clauses) + " .").capitalize()


def generate(n: int, *, seed: int = SEED) -> tuple[list[str], np.ndarray, np.ndarray]:
  """`n` sentences, their labels (balanced, shuffled) and kinds (indices into `SYNTHTEXT_KINDS`)."""
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(n) % len(CLASSES))
  kinds = rng.choice(len(SYNTHTEXT_KINDS), size=n, p=[0.7, 0.15, 0.15])
  texts = [_sentence(rng, int(label), SYNTHTEXT_KINDS[kind]) for label, kind in zip(labels, kinds)]
  return texts, labels.astype(np.int64), kinds.astype(np.int64)


def load_synthtext(*, spec: str = "synthtext") -> Dataset:
  texts, labels, _ = generate(NUM_TRAIN + NUM_TEST)
  ids = np.asarray([f"synthtext-{i}" for i in range(len(texts))], dtype=object)
  names = ("text",)
  train = make_text_split([texts[:NUM_TRAIN]], labels[:NUM_TRAIN], ids[:NUM_TRAIN], names=names, source=spec)
  test = make_text_split([texts[NUM_TRAIN:]], labels[NUM_TRAIN:], ids[NUM_TRAIN:], names=names, source=spec)
  return make_dataset(spec, train, test, num_classes=len(CLASSES), class_names=CLASSES, text_columns=names)


@register_source(
  "synthtext", description="synthetic sentences in 4 topics, with ambiguous and sparse examples (offline)"
)
def _synthtext_source(argument, *, spec, **options) -> Dataset:
  return load_synthtext(spec=spec)
