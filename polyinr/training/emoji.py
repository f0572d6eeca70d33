"""Eight emoji groups derived from the Unicode names of the Twemoji files (the `emoji-groups` dataset).

A Twemoji file is named by its code points (`1f468-200d-1f692.png`). Each emoji gets the first group whose
rule matches, in this order:

1. **flags**: a regional-indicator pair, a tag-sequence flag or a name with FLAG;
2. **people**: the emoji exists with a skin-tone modifier in the set (Unicode's Emoji_Modifier_Base,
   read off the files themselves), or a name of its sequence has a person or body word (MAN, WOMAN,
   FAMILY, HAND, ...);
3. **faces**: the first name has FACE (not CLOCK FACE, not an animal's face);
4. **hearts**: the first name has HEART;
5. **animals & plants**, 6. **food & drink**, 7. **symbols**: keywords of the first name;
8. **objects**: everything else (vehicles, buildings, tools, sport, weather, clothing, ...).

Python's `unicodedata` (Unicode 14 in Python 3.11) names most of them; the few newer emoji it does not
know fall to objects. Skin-tone variants make people the largest group (about 60 % of the files); the
training loop samples classes by their frequency, and the notebooks show one row per group.
"""
from __future__ import annotations

import re
import unicodedata

EMOJI_GROUPS = ("faces", "people", "hearts", "animals & plants", "food & drink", "objects", "symbols", "flags")

SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))                    # Fitzpatrick modifiers 1-2 .. 6
_JOINERS = frozenset({0x200D, 0xFE0F, 0x20E3})                      # ZWJ, variation selector 16, keycap
_FLAG_FIRST = (0x1F3F4, 0x1F3F3, 0x1F3C1, 0x1F6A9, 0x1F38C)           # black / white / chequered / triangular / crossed


def _words(*words: str) -> re.Pattern:
    return re.compile(r"\b(" + "|".join(sorted(words, key=len, reverse=True)) + r")\b")


_PEOPLE = _words(
    "MAN", "MEN", "WOMAN", "WOMEN", "WOMANS", "PERSON", "PEOPLE", "ADULT", "BOY", "GIRL", "CHILD", "BABY", "FAMILY",
    "KISS", "COUPLE", "HAND", "HANDS", "FINGER", "FIST", "THUMBS", "PRINCE", "PRINCESS", "BRIDE", "GROOM", "MERMAID",
    "MERMAN", "MERPERSON", "FAIRY", "VAMPIRE", "ZOMBIE", "GENIE", "ELF", "MAGE", "SUPERHERO", "SUPERVILLAIN", "NINJA",
    "DANCER", "RUNNER", "SURFER", "SWIMMER", "SKIER", "SNOWBOARDER", "GOLFER", "JUGGLING", "EAR", "NOSE", "EYE", "EYES",
    "TONGUE", "MOUTH", "LIP", "LEG", "FOOT", "TOOTH", "BRAIN", "LUNGS", "ANATOMICAL HEART", "BICEPS", "SILHOUETTE",
    "BUST", "BUSTS", "SPEAKING HEAD", "FOOTPRINTS", "BALD", "HAIR", "BEARD", "POLICE OFFICER", "GUARDSMAN",
    "CONSTRUCTION WORKER", "SANTA", "SLEUTH", "PREGNANT", "BREAST", "ANGEL", "OGRE", "TROLL", "BATH", "ACCOMMODATION")
_ANIMALS = _words(
    "RAT", "MOUSE", "OX", "WATER BUFFALO", "COW", "TIGER", "LEOPARD", "RABBIT", "CAT", "DRAGON", "CROCODILE", "WHALE",
    "SNAIL", "SNAKE", "HORSE", "RAM", "GOAT", "SHEEP", "MONKEY", "ROOSTER", "CHICKEN", "DOG", "PIG", "BOAR", "ELEPHANT",
    "OCTOPUS", "SPIRAL SHELL", "BUG", "ANT", "HONEYBEE", "BEETLE", "FISH", "BLOWFISH", "TURTLE", "CHICK", "BIRD",
    "PENGUIN", "KOALA", "POODLE", "DROMEDARY", "CAMEL", "DOLPHIN", "FROG", "BEAR", "PANDA", "PAW", "CHIPMUNK", "SPIDER",
    "SCORPION", "CRAB", "LION", "UNICORN", "EAGLE", "DUCK", "BAT", "SHARK", "OWL", "FOX", "BUTTERFLY", "DEER",
    "GORILLA", "LIZARD", "RHINOCEROS", "SHRIMP", "SQUID", "GIRAFFE", "ZEBRA", "HEDGEHOG", "SAUROPOD", "T-REX",
    "CRICKET", "KANGAROO", "LLAMA", "PEACOCK", "HIPPOPOTAMUS", "PARROT", "RACCOON", "LOBSTER", "MOSQUITO", "MICROBE",
    "BADGER", "SWAN", "SLOTH", "OTTER", "ORANGUTAN", "SKUNK", "FLAMINGO", "OYSTER", "BISON", "MAMMOTH", "BEAVER",
    "DODO", "FEATHER", "SEAL", "FLY", "WORM", "COCKROACH", "CORAL", "JELLYFISH", "GOOSE", "MOOSE", "DONKEY", "WING",
    "ORCA", "TURKEY", "SEEDLING", "TREE", "PALM", "CACTUS", "TULIP", "CHERRY BLOSSOM", "ROSE", "HIBISCUS", "SUNFLOWER",
    "BLOSSOM", "EAR OF RICE", "HERB", "LEAF", "LEAVES", "SHAMROCK", "FOUR LEAF CLOVER", "MUSHROOM", "BOUQUET", "FLOWER",
    "WILTED", "POTTED PLANT", "NEST", "LOTUS", "HYACINTH", "PAW PRINTS", "PLANT")
_FOOD = _words(
    "GRAPES", "MELON", "WATERMELON", "TANGERINE", "LEMON", "BANANA", "PINEAPPLE", "MANGO", "APPLE", "PEAR", "PEACH",
    "CHERRIES", "STRAWBERRY", "BLUEBERRIES", "KIWIFRUIT", "TOMATO", "OLIVE", "COCONUT", "AVOCADO", "AUBERGINE",
    "POTATO", "CARROT", "CORN", "HOT PEPPER", "BELL PEPPER", "CUCUMBER", "LEAFY GREEN", "BROCCOLI", "GARLIC", "ONION",
    "PEANUTS", "BEANS", "CHESTNUT", "GINGER", "PEA POD", "BREAD", "CROISSANT", "BAGUETTE", "FLATBREAD", "PRETZEL",
    "BAGEL", "PANCAKES", "WAFFLE", "CHEESE", "MEAT", "POULTRY", "BACON", "HAMBURGER", "FRENCH FRIES", "PIZZA",
    "HOT DOG", "SANDWICH", "TACO", "BURRITO", "TAMALE", "STUFFED", "FALAFEL", "EGG", "COOKING", "SHALLOW PAN",
    "POT OF FOOD", "FONDUE", "BOWL", "GREEN SALAD", "POPCORN", "BUTTER", "SALT", "CANNED", "BENTO", "RICE", "CURRY",
    "SPAGHETTI", "ROASTED", "ODEN", "SUSHI", "FRIED SHRIMP", "FISH CAKE", "MOON CAKE", "DANGO", "DUMPLING",
    "FORTUNE COOKIE", "TAKEOUT", "ICE CREAM", "SHAVED ICE", "SOFT ICE CREAM", "DOUGHNUT", "COOKIE", "BIRTHDAY CAKE",
    "SHORTCAKE", "CUPCAKE", "PIE", "CHOCOLATE", "CANDY", "LOLLIPOP", "CUSTARD", "HONEY POT", "BABY BOTTLE", "MILK",
    "HOT BEVERAGE", "TEAPOT", "TEACUP", "SAKE", "CHAMPAGNE", "WINE", "COCKTAIL", "TROPICAL DRINK", "BEER", "CLINKING",
    "TUMBLER", "POURING", "CUP WITH STRAW", "BUBBLE TEA", "BEVERAGE BOX", "MATE", "ICE CUBE", "CHOPSTICKS", "FORK",
    "KNIFE", "SPOON", "HOCHO", "JAR", "AMPHORA", "LIME")
_SYMBOLS = _words(
    "SIGN", "SYMBOL", "ARROW", "ARROWS", "SQUARED", "CIRCLED", "DIGIT", "ASTERISK", "COPYRIGHT", "MARK", "BUTTON",
    "SQUARE", "CIRCLE", "TRIANGLE", "DIAMOND", "EXCLAMATION", "QUESTION", "ARIES", "TAURUS", "GEMINI", "CANCER", "LEO",
    "VIRGO", "LIBRA", "SCORPIUS", "SAGITTARIUS", "CAPRICORN", "AQUARIUS", "PISCES", "OPHIUCHUS", "INFORMATION SOURCE",
    "LETTER", "IDEOGRAPH", "PART ALTERNATION", "WAVY DASH", "LOOP", "STAR OF DAVID", "YIN YANG", "PEACE", "ATOM",
    "RADIOACTIVE", "BIOHAZARD", "FLEUR-DE-LIS", "TRIDENT", "BEGINNER", "ANTENNA", "VIBRATION", "INFINITY", "SPARKLE",
    "BALLOT", "HUNDRED POINTS", "ANGER", "DIZZY", "SPEECH", "THOUGHT", "COLLISION", "DASH", "HOLE", "WHEEL OF DHARMA",
    "MENORAH", "SHINTO", "OM", "HIGH VOLTAGE", "CLOCKWISE", "ANTICLOCKWISE", "SHUFFLE", "REPEAT", "PLAY", "PAUSE",
    "RECORD", "EJECT", "BRIGHTNESS", "SIGNAL STRENGTH", "MALE", "FEMALE", "STAFF OF AESCULAPIUS", "HEAVY EQUALS",
    "MINUS", "PLUS", "DIVISION", "MULTIPLICATION", "KATAKANA", "NEGATIVE", "INPUT")


def code_points(stem: str) -> list[int]:
    """A Twemoji file stem ('1f468-200d-1f692') -> its code points."""
    try:
        return [int(part, 16) for part in stem.split("-")]
    except ValueError as e:
        raise ValueError(f"stem: expected hyphen-separated hex code points like '1f468-200d-1f692', got {stem!r}") from e


def _name(cp: int) -> str:
    return unicodedata.name(chr(cp), "")


def _base(cps: list[int]) -> tuple:
    return tuple(c for c in cps if c not in SKIN_TONES)


def emoji_group(stem: str, toned_bases=frozenset()) -> str:
    """The group (one of EMOJI_GROUPS) of the emoji with file stem `stem`; `toned_bases`: the code-point tuples
    (skin tones removed) of the emoji that exist with a skin-tone modifier in the set."""
    cps = code_points(stem)
    core = [c for c in cps if c not in _JOINERS and c not in SKIN_TONES and not 0xE0020 <= c <= 0xE007F] or cps
    names = [_name(c) for c in core]
    first = names[0]
    if any(0x1F1E6 <= c <= 0x1F1FF for c in core) or core[0] in _FLAG_FIRST or "FLAG" in first:
        return "flags"
    if SKIN_TONES.intersection(cps) or _base(cps) in toned_bases:
        return "people"
    if "FACE" in first and "CLOCK" not in first and not _ANIMALS.search(first):
        return "faces"
    if any(_PEOPLE.search(n) for n in names):
        return "people"
    if "HEART" in first:
        return "hearts"
    for group, words in (("animals & plants", _ANIMALS), ("food & drink", _FOOD), ("symbols", _SYMBOLS)):
        if words.search(first):
            return group
    return "objects"


def emoji_groups(stems) -> list[str]:
    """The group of every stem of a set of Twemoji files (the skin-tone rule reads the whole set)."""
    stems = list(stems)
    toned = {_base(code_points(s)) for s in stems if SKIN_TONES.intersection(code_points(s))}
    return [emoji_group(s, toned) for s in stems]
