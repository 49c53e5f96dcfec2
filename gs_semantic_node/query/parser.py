"""Instruction -> target phrase, count and spatial relation. Small and rule-based on purpose: it
must be predictable, fast and never throw on odd input."""

from __future__ import annotations

import re
from dataclasses import dataclass

POLITE = (
    r"(please|kindly|could you please|could you|can you|would you mind|would you|will you|i want you to|"
    r"i need you to|i'd like you to|robot|hey|okay|ok|now|thanks|thank you|for me|quickly)"
)
# what the speaker wants, in front of the object phrase ("i need the ...", "can i have the ...")
WANTS = (
    r"(i need|i want|i'd like|i would like|i'm looking for|i am looking for|can i have|could i have|may i have|"
    r"can i get|could i get|let me have|let me see|do you see|do you have|there should be)"
)
VERBS = (
    r"(pick up|pick|grab|grasp|take|get|fetch|bring|hand over|hand|give|pass|find|locate|show|point to|point at|"
    r"look at|move to|go to|touch|lift|hold|where is|where are|where's|is there|are there|what is|put away|"
    r"clean up|select|segment|picking up|grabbing|getting|fetching|bringing|handing over|handing|giving|passing|"
    r"taking|finding)"
)
OBJECT_PRONOUN = r"(me|us)"  # "get me the ...", "pass us the ..."
ARTICLES = r"\b(the|a|an|some|any|my|that|this|those|these)\b"
COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "both": 2, "all": 0, "every": 0}
RELATIONS = [
    ("next_to", r"\b(next to|beside|near|close to|by)\b"),
    ("left_of", r"\b(to the left of|left of)\b"),
    ("right_of", r"\b(to the right of|right of)\b"),
    ("on", r"\b(on top of|on|upon)\b"),
    ("in", r"\b(inside|in)\b"),
]
NEAREST = r"\b(nearest|closest) to (the )?(camera|me|robot|you)\b|\b(nearest|closest) one\b"


@dataclass
class ParsedQuery:
    text: str
    target: str
    count: int = 1  # 0 = all
    relation: str | None = None  # next_to | left_of | right_of | on | in | nearest_camera
    anchor: str | None = None


def _clean(s: str) -> str:
    s = re.sub(ARTICLES, " ", s)
    return re.sub(r"\s+", " ", s).strip(" ,.?!")


def singular(word: str) -> str:
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith(("ches", "shes", "xes", "ses")):
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def parse(text: str) -> ParsedQuery:
    s = str(text).lower().replace("\u2019", "'")
    s = re.sub(r"[^a-z0-9' ,.?!-]", " ", s)
    s = re.sub(rf"\b{POLITE}\b", " ", s)
    s = re.sub(rf"^\s*{WANTS}\b", " ", s.strip(" ,.?!"))
    for _ in range(2):  # "please pick up and grab ..." stays sane
        s = re.sub(rf"^\s*(and\s+)?{VERBS}(\s+{OBJECT_PRONOUN})?\b", " ", s.strip(" ,.?!"))
    s = re.sub(r"\s+", " ", s).strip(" ,.?!")
    s = re.sub(r"^where\s+(.+?)\s+(is|are)$", r"\1", s)  # "show me where the mug is"
    s = re.sub(r"\s+(up|over|out)$", "", s)  # "pick the mug up", "hand the cup over"
    relation = anchor = None
    if re.search(NEAREST, s):
        relation = "nearest_camera"
        s = re.sub(NEAREST, " ", s)
    else:
        for name, pat in RELATIONS:
            m = re.search(pat, s)
            if m and m.start() > 0:
                relation, anchor = name, _clean(s[m.end() :]) or None
                s = s[: m.start()]
                break
    count = 1
    m = re.match(r"\s*(\d+|" + "|".join(COUNTS) + r")\b", _clean(s))
    target = _clean(s)
    if m:
        tok = m.group(1)
        count = int(tok) if tok.isdigit() else COUNTS[tok]
        target = _clean(target[m.end() :])
        target = " ".join(singular(w) for w in target.split()) if count != 1 else target
    return ParsedQuery(str(text), target, count, relation, anchor)
