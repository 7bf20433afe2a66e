"""Template captions for the procedural corpus: a closed vocabulary, compositional clauses.

Each event becomes a clause ("a loud high pitched bell rings twice", "heavy rain falls") whose
words state the class and every parameter the class uses; clips with several events join the
clauses with temporal connectors ("then", "while", "with ... in the background"). Paraphrases
vary the noun, verb, word forms and connector. `caption_vocabulary()` lists every word the
templates can produce, so a word-level text encoder can be built from it.
"""

from __future__ import annotations

import re

import numpy as np

# Per class: subjects as (text, plural), verbs as (singular, plural), optional noun phrase used in
# "with <np> in the background" / "over <np>".
CLASS_WORDS: dict[str, dict] = {
    "beep": {
        "subjects": [("beep", False), ("electronic beep", False), ("device", False)],
        "verbs": {"beep": ("sounds", None), "electronic beep": ("sounds", None), "device": ("beeps", None)},
        "keywords": ("beep",),
    },
    "rising_chirp": {
        "subjects": [("rising chirp", False), ("upward sweep", False), ("rising tone", False)],
        "verbs": {None: ("sweeps upward", None), "alt": ("rises", None), "alt2": ("glides upward", None)},
        "keywords": ("rising", "upward"),
    },
    "falling_chirp": {
        "subjects": [("falling chirp", False), ("downward sweep", False), ("falling tone", False)],
        "verbs": {None: ("sweeps downward", None), "alt": ("falls", None), "alt2": ("glides downward", None)},
        "keywords": ("falling", "downward"),
    },
    "siren": {
        "subjects": [("siren", False), ("police siren", False), ("emergency siren", False)],
        "verbs": {None: ("wails", None), "alt": ("blares", None), "alt2": ("sounds", None)},
        "keywords": ("siren",),
        "np_rate": {"slow": "slowly wailing", "fast": "rapidly wailing"},
    },
    "bell": {
        "subjects": [("bell", False), ("chime", False), ("church bell", False)],
        "verbs": {None: ("rings", None), "alt": ("chimes", None)},
        "keywords": ("bell", "chime"),
    },
    "engine": {
        "subjects": [("engine", False), ("motor", False), ("engine", False)],
        "verbs": {None: ("hums", None), "alt": ("idles", None), "alt2": ("rumbles", None)},
        "keywords": ("engine", "motor"),
    },
    "rain": {
        "subjects": [("rain", None), ("rainfall", None), ("rain shower", False)],
        "verbs": {None: ("falls", None), "alt": ("patters", None), "alt2": ("pours down", None)},
        "keywords": ("rain",),
        "rate_adj": {"slow": ["light", "gentle"], "fast": ["heavy", "intense"]},
    },
    "footsteps": {
        "subjects": [("footsteps", True), ("steps", True), ("person", False)],
        "verbs": {"person": ("walks", None), None: (None, "pass by"), "alt": (None, "are heard")},
        "keywords": ("footsteps", "steps", "walks"),
        "rate_adv": {
            "slow": ["slowly", "at a slow pace"],
            "fast": ["quickly", "hurriedly", "at a fast pace"],
        },
    },
    "bird": {
        "subjects": [("bird", False), ("small bird", False), ("songbird", False)],
        "verbs": {None: ("tweets", None), "alt": ("chirps", None), "alt2": ("sings", None)},
        "keywords": ("bird",),
    },
    "wind": {
        "subjects": [("wind", None), ("gusty wind", None), ("breeze", False)],
        "verbs": {None: ("blows", None), "alt": ("howls", None), "alt2": ("whooshes", None)},
        "keywords": ("wind", "breeze"),
    },
    "knocking": {
        "subjects": [("someone", None), ("person", False), ("visitor", False)],
        "verbs": {
            None: ("knocks on a door", None),
            "alt": ("knocks on wood", None),
            "alt2": ("knocks", None),
        },
        "keywords": ("knocks",),
    },
    "buzzer": {
        "subjects": [("buzzer", False), ("electric buzzer", False), ("loud buzzer", False)],
        "verbs": {None: ("buzzes", None), "alt": ("drones", None)},
        "keywords": ("buzzer",),
    },
    "crackle": {
        "subjects": [("fire", False), ("campfire", False), ("crackling fire", False)],
        "verbs": {None: ("crackles", None), "alt": ("pops and crackles", None)},
        "keywords": ("fire",),
        "rate_adv": {"slow": ["slowly", "sparsely"], "fast": ["rapidly", "intensely"]},
        "np_rate": {"slow": "sparsely crackling", "fast": "rapidly crackling"},
    },
}
# "loud buzzer" is a subject that already says "loud": only allowed for loud buzzers (handled below).

PITCH_ADJ = {"low": ["low", "low pitched", "deep"], "high": ["high", "high pitched"]}
PITCH_TRAIL = {"low": ["with a low pitch"], "high": ["with a high pitch"]}
RATE_ADV = {"slow": ["slowly", "at a slow pace"], "fast": ["quickly", "rapidly", "at a fast pace"]}
LOUD_ADJ = {"loud": ["loud"], "quiet": ["quiet", "soft", "faint"]}
LOUD_ADV = {"loud": ["loudly"], "quiet": ["quietly", "softly", "faintly"]}
COUNT_WORDS = {1: "once", 2: "twice", 3: "three times"}

SINGLE_FRAMES = ["{A}", "{A}", "{A}", "in the recording {A}", "here {A}"]
SEQUENCE_FRAMES = [
    "{A}, then {B}",
    "{A}, and then {B}",
    "first {A}, then {B}",
    "{A}, after that {B}",
    "after {A}, {B}",
]
OVERLAP_FRAMES = [
    "{A} while {B}",
    "{A} as {B}",
    "while {B}, {A}",
    "{B} while {A}",
    "{A} with {b} in the background",
    "{A} over {b}",
]
SEQ3_FRAMES = [
    "{A}, then {B}, then {C}",
    "first {A}, then {B}, and finally {C}",
    "{A}, after that {B}, and then {C}",
    "{A}, then {B}, and finally {C}",
]
SEQ_BG_FRAMES = [
    "{A}, then {B}, while {C}",
    "while {C}, {A} and then {B}",
    "{A}, then {B}, with {c} in the background",
    "{A} and then {B} as {C}",
]

_WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    """Lower-case word tokens of a caption (letters only; punctuation dropped)."""
    return _WORD.findall(text.lower())


def _article(first_word: str) -> str:
    return "an" if first_word[:1] in "aeiou" else "a"


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _verbs(cls: str, subject: str, plural: bool) -> list[str]:
    table = CLASS_WORDS[cls]["verbs"]
    if subject in table:
        keys = [subject]
    else:
        keys = [k for k in table if k not in {s for s, _ in CLASS_WORDS[cls]["subjects"]}]
    out = []
    for k in keys:
        sing, plur = table[k]
        v = plur if plural else sing
        if v is not None:
            out.append(v)
    return out


def describe_event(ev, rng: np.random.Generator) -> tuple[str, str | None]:
    """(clause, noun phrase or None) describing one event spec in words.

    The clause names the class and states each parameter the class uses: pitch, rate, loudness and
    repeat count. The noun phrase (for "with <np> in the background") exists for background classes.
    """
    info = CLASS_WORDS[ev.cls]
    subjects = [s for s in info["subjects"] if not (s[0].startswith("loud ") and ev.loudness != "loud")]
    subject, plural = _pick(rng, subjects)
    subj_states_loud = subject.startswith("loud ")
    verb_options = _verbs(ev.cls, subject, bool(plural))
    verb = _pick(rng, verb_options)

    adjs: list[str] = []
    advs: list[str] = []
    trail: list[str] = []
    if not subj_states_loud:
        if rng.random() < 0.6:
            adjs.append(_pick(rng, LOUD_ADJ[ev.loudness]))
        else:
            advs.append(_pick(rng, LOUD_ADV[ev.loudness]))
    if ev.pitch is not None:
        if rng.random() < 0.7:
            adjs.append(_pick(rng, PITCH_ADJ[ev.pitch]))
        else:
            trail.append(_pick(rng, PITCH_TRAIL[ev.pitch]))
    if ev.rate is not None:
        if "rate_adj" in info:
            adjs.append(_pick(rng, info["rate_adj"][ev.rate]))
        else:
            advs.insert(0, _pick(rng, info.get("rate_adv", RATE_ADV)[ev.rate]))
    count = COUNT_WORDS[ev.count] if ev.count else None

    if subject in _AGENTS and adjs:  # the sound is loud, not the person: adjectives become adverbs
        advs = advs + [_adj_to_adv(a) for a in adjs]
        adjs = []
    np_words = adjs + [subject]
    noun_phrase = " ".join(np_words)
    if plural is None or plural or subject == "someone":
        head = noun_phrase
    else:
        head = f"{_article(noun_phrase)} {noun_phrase}"
    parts = [head, verb]
    if count:
        parts.append(count)
    if advs:
        parts.append(advs[0] if len(advs) == 1 else ", ".join(advs[:-1]) + " and " + advs[-1])
    parts += trail
    clause = " ".join(parts)

    bg_np = None
    if ev.cls in _BG_NP:
        np_adjs = [_pick(rng, LOUD_ADJ[ev.loudness])]
        if ev.pitch is not None:
            np_adjs.append(_pick(rng, PITCH_ADJ[ev.pitch]))
        if ev.rate is not None:
            if "rate_adj" in info:
                np_adjs.append(_pick(rng, info["rate_adj"][ev.rate]))
            else:
                np_adjs.append(info["np_rate"][ev.rate])
        noun = _BG_NP[ev.cls]
        phrase = " ".join(np_adjs + [noun])
        bg_np = phrase if ev.cls in ("rain", "wind") else f"{_article(phrase)} {phrase}"
    return clause, bg_np


_AGENTS = ("person", "visitor", "someone")
_BG_NP = {
    "siren": "siren",
    "engine": "engine hum",
    "rain": "rain",
    "wind": "wind",
    "buzzer": "buzzer",
    "crackle": "fire",
}
_ADJ_ADV = {
    "loud": "loudly",
    "quiet": "quietly",
    "soft": "softly",
    "faint": "faintly",
    "light": "lightly",
    "gentle": "gently",
    "heavy": "heavily",
    "intense": "intensely",
}


def _adj_to_adv(a: str) -> str | None:
    return _ADJ_ADV.get(a)


def compose_caption(events_in_order, layout: str, rng: np.random.Generator) -> str:
    """One caption for a clip: events in temporal order, joined by the layout's connectors.

    layout: "single" (A), "sequence" (A then B), "overlap" (A during background B),
    "sequence3" (A then B then C), "sequence_background" (A then B, during background C).
    """
    parts = [describe_event(ev, rng) for ev in events_in_order]
    if layout == "single":
        frame = _pick(rng, SINGLE_FRAMES)
        text = frame.format(A=parts[0][0])
    elif layout == "sequence":
        text = _pick(rng, SEQUENCE_FRAMES).format(A=parts[0][0], B=parts[1][0])
    elif layout == "overlap":
        text = _pick(rng, OVERLAP_FRAMES).format(A=parts[0][0], B=parts[1][0], b=parts[1][1])
    elif layout == "sequence3":
        text = _pick(rng, SEQ3_FRAMES).format(A=parts[0][0], B=parts[1][0], C=parts[2][0])
    elif layout == "sequence_background":
        text = _pick(rng, SEQ_BG_FRAMES).format(A=parts[0][0], B=parts[1][0], C=parts[2][0], c=parts[2][1])
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return text[:1].upper() + text[1:]


def caption_vocabulary() -> list[str]:
    """Sorted list of every word the caption templates can produce (lower case)."""
    vocab: set[str] = {"a", "an"}
    texts: list[str] = []
    for info in CLASS_WORDS.values():
        texts += [s for s, _ in info["subjects"]]
        for sing, plur in info["verbs"].values():
            texts += [v for v in (sing, plur) if v]
        for key in ("rate_adj", "rate_adv"):
            for opts in info.get(key, {}).values():
                texts += opts
        texts += list(info.get("np_rate", {}).values())
    for table in (PITCH_ADJ, PITCH_TRAIL, RATE_ADV, LOUD_ADJ, LOUD_ADV):
        for opts in table.values():
            texts += opts
    texts += list(COUNT_WORDS.values()) + list(_BG_NP.values()) + list(_ADJ_ADV.values()) + ["and"]
    for frames in (SINGLE_FRAMES, SEQUENCE_FRAMES, OVERLAP_FRAMES, SEQ3_FRAMES, SEQ_BG_FRAMES):
        for f in frames:
            texts.append(re.sub(r"\{[A-Za-z]\}", " ", f))
    for t in texts:
        vocab.update(words(t))
    return sorted(vocab)
