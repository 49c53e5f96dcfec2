"""Instructions as people say them: verbs, politeness, articles, plurals, counts and relations."""

import pytest

from gs_semantic_node.query.parser import parse

# text, target, count, relation, anchor
PHRASINGS = [
    ("grab the mug", "mug", 1, None, None),
    ("Grab the mug.", "mug", 1, None, None),
    ("Please pick up the red bowl.", "red bowl", 1, None, None),
    ("get me the bunny book", "bunny book", 1, None, None),
    ("could you get me the bunny book?", "bunny book", 1, None, None),
    ("can you get me the mug please", "mug", 1, None, None),
    ("Could you please pass me the ketchup bottle", "ketchup bottle", 1, None, None),
    ("would you mind handing over the bowl", "bowl", 1, None, None),
    ("I need the red bowl", "red bowl", 1, None, None),
    ("i want the wine bottle", "wine bottle", 1, None, None),
    ("I'd like the juice carton", "juice carton", 1, None, None),
    ("I would like a banana, please", "banana", 1, None, None),
    ("the mug please", "mug", 1, None, None),
    ("mug", "mug", 1, None, None),
    ("the butter, thanks", "butter", 1, None, None),
    ("can I have the apple", "apple", 1, None, None),
    ("could I get the frying pan", "frying pan", 1, None, None),
    ("may I have some popcorn", "popcorn", 1, None, None),
    ("let me have that book", "book", 1, None, None),
    ("I'm looking for my phone", "phone", 1, None, None),
    ("hey robot, fetch the can", "can", 1, None, None),
    ("okay robot pick up the bottle now", "bottle", 1, None, None),
    ("please pick the mug up", "mug", 1, None, None),
    ("pick up the mug for me", "mug", 1, None, None),
    ("hand me the cup", "cup", 1, None, None),
    ("give me the remote control", "remote control", 1, None, None),
    ("pass us the scissors", "scissors", 1, None, None),
    ("bring me the plate", "plate", 1, None, None),
    ("fetch me a spoon", "spoon", 1, None, None),
    ("take the towel", "towel", 1, None, None),
    ("find the teddy bear", "teddy bear", 1, None, None),
    ("locate the keyboard", "keyboard", 1, None, None),
    ("show me the laptop", "laptop", 1, None, None),
    ("show me where the mug is", "mug", 1, None, None),
    ("where is the ketchup?", "ketchup", 1, None, None),
    ("where's the orange", "orange", 1, None, None),
    ("is there a bowl?", "bowl", 1, None, None),
    ("point at the vase", "vase", 1, None, None),
    ("Please, robot, grasp the sponge.", "sponge", 1, None, None),
    ("pick up and grab the tray", "tray", 1, None, None),
    ("I need you to grab the knife", "knife", 1, None, None),
    ("bring me the two books", "book", 2, None, None),
    ("grab two mugs", "mug", 2, None, None),
    ("get all apples", "apple", 0, None, None),
    ("get me all the apples", "apple", 0, None, None),
    ("pick up both cans", "can", 2, None, None),
    ("grab 3 bottles", "bottle", 3, None, None),
    ("pick up every box", "box", 0, None, None),
    ("the mug next to the bowl", "mug", 1, "next_to", "bowl"),
    ("get me the cup beside the plate please", "cup", 1, "next_to", "plate"),
    ("could you hand me the cup left of the plate", "cup", 1, "left_of", "plate"),
    ("grab the can to the right of the mug", "can", 1, "right_of", "mug"),
    ("the book on the table", "book", 1, "on", "table"),
    ("the apple in the bowl", "apple", 1, "in", "bowl"),
    ("is there a mug on the table?", "mug", 1, "on", "table"),
    ("grab the bottle nearest to the camera", "bottle", 1, "nearest_camera", None),
    ("get me the mug closest to me", "mug", 1, "nearest_camera", None),
    ("Could you please grab the RED mug near the bowl?", "red mug", 1, "next_to", "bowl"),
]


def test_the_table_is_at_least_fifty_phrasings():
    assert len(PHRASINGS) >= 50


@pytest.mark.parametrize("text,target,count,relation,anchor", PHRASINGS)
def test_parser_reads_phrasings(text, target, count, relation, anchor):
    p = parse(text)
    assert (p.target, p.count, p.relation, p.anchor) == (target, count, relation, anchor)
