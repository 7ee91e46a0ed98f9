"""The kind of answer a question asks for (:func:`expected_answer`): a number, a date, a
name, and cues for kinds beyond those: a colour ("What colour is ..."), what a thing is
made of ("main ingredient", "made of"), a time of day ("What time does ... open"); and,
among names, a person ("who") or a place ("which town"), which read a sentence's
capitalised words differently.
"""

from __future__ import annotations

import re

from worker.internet.rank import QuestionShape, analyse_question


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


MONTHS = _words(
    "january february march april may june july august september october november december"
)
_MONTH = "(" + "|".join(sorted(MONTHS)) + ")"
FULL_DATE = re.compile(
    rf"\b(\d{{1,2}}(st|nd|rd|th)? (of )?{_MONTH},? \d{{3,4}}"
    rf"|{_MONTH} \d{{1,2}}(st|nd|rd|th)?,? \d{{3,4}})\b",
    re.I,
)
"""A day, month and year: "9 November 1887", "June 29, 2007"."""
MONTH_YEAR = re.compile(rf"\b{_MONTH},? \d{{3,4}}\b", re.I)
"""A month and year: "March 1932"."""

_EXPECTS_NAME = re.compile(
    r"^\s*(who|whom|whose|where|(in |from )?(what|which) (city|country|town|place|person|company"
    r"|river|lake|sea|team|capital|language)|what(\s+is|\s+was|'s) the (name|capital"
    r"|language)|what(\s+is|\s+was|'s) the \w+est\b"
    # "Which architect designed ...": which and a noun (not "which is", "which of").
    r"|(in |from |by )?which (?!(is|was|are|were|one|ones|of|do|does|did|can|has|have)\b)\w+)\b",
    re.I,
)
NOT_NAMES = _words(
    "the a an it its this that these those he she they we you i in on at of for to"
    " and or but by with from as after before during since about"
)
"""Capitalised words that start sentences or are too common to be an answer."""

_COLOUR_QUESTION = re.compile(r"\b(what|which) colou?rs?\b|\bthe colou?rs? of\b", re.I)
COLOURS = _words(
    "amber beige black blue bronze brown cream copper crimson gold golden green grey"
    " gray indigo ivory lilac maroon navy ochre olive orange pink purple red rust"
    " scarlet silver tan teal turquoise violet white yellow"
)
"""Colour words; a sentence holding one answers a colour question."""

# Things named by a common, lower-case word ("a badger", "the krona"): the answer is a
# word of the asked kind. "Which fruit ..." asks for one, not for a capitalised name.
_KIND_QUESTION = re.compile(
    r"\b(what|which) (kind of |type of |sort of )?(?P<kind>currency|fruit|animal|breed)\b"
    r"|\bthe (?P<attribute>currency) (of|in|used)\b",
    re.I,
)
WORDS_OF_KIND = {
    "currency": _words(
        "mark marks krona kronor krone kroner euro euros dollar dollars pound pounds"
        " franc francs peso pesos lira lire rupee rupees yen yuan rouble roubles ruble"
        " rubles shilling shillings crown crowns florin florins guilder guilders dinar"
        " dinars dirham dirhams rand zloty forint koruna ducat ducats thaler thalers"
        " escudo escudos peseta pesetas riyal rial baht ringgit naira kwacha taler"
    ),
    "fruit": _words(
        "apple apples apricot apricots banana bananas blackberry blackberries"
        " blackcurrant blackcurrants blueberry blueberries cherry cherries cranberry"
        " cranberries currant currants damson damsons date dates elderberry elderberries"
        " fig figs gooseberry gooseberries grape grapes grapefruit greengage lemon"
        " lemons lime limes mango mangoes medlar medlars melon melons mulberry"
        " mulberries nectarine orange oranges peach peaches pear pears pineapple plum"
        " plums pomegranate quince quinces raspberry raspberries redcurrant rhubarb"
        " sloe sloes strawberry strawberries tangerine"
    ),
    "animal": _words(
        "badger bat bear beaver bee boar buffalo bull camel cat cow crab crane crow deer"
        " dog dolphin donkey dove duck eagle eel elephant elk falcon ferret fox frog"
        " goat goose gull hare hawk hedgehog heron horse hound kestrel kingfisher lamb"
        " lion lizard lynx magpie mole moose mouse otter owl ox panther parrot peacock"
        " pelican penguin pig pigeon pony puffin rabbit ram rat raven robin salmon seal"
        " shark sheep snake sparrow squirrel stag stoat swan tiger toad tortoise trout"
        " turtle unicorn vole walrus weasel whale wolf wren"
    ),
    # "Captain is a scruffy Border terrier": the breed's own word is lower case.
    "breed": _words(
        "terrier spaniel retriever collie sheepdog shepherd poodle beagle labrador"
        " dachshund greyhound whippet lurcher bulldog mastiff setter pointer husky corgi"
        " pug boxer dalmatian schnauzer hound foxhound bloodhound wolfhound"
        " deerhound sheltie chihuahua rottweiler doberman pinscher samoyed malamute"
        " newfoundland pomeranian weimaraner vizsla akita shih-tzu maltese papillon"
        " siamese persian burmese sphynx ragdoll bengal shire cob thoroughbred arab"
        " hackney clydesdale appaloosa mustang hereford angus friesian jersey"
        " guernsey highland longhorn merino suffolk"
    ),
}
"""Words of each lower-case kind a question may ask for ("What animal ...")."""

_NAME_OF = re.compile(r"\bthe name of (?:the|a|an|his|her|its|their) (\w+)", re.I)
_PERSON_NOUNS = _words(
    "person man woman boy girl author writer founder inventor architect designer"
    " director owner captain king queen president mayor singer player winner character"
    " hero heroine narrator"
)

_MATERIAL_QUESTION = re.compile(
    r"\b(ingredients?|materials?)\b"
    r"|\b(made|built|constructed|cast|carved)\s+(\w+\s+)?(of|from|with|out of)\b"
    r"|\b(made|built|constructed)\b.*\b(of|from)\W*$",
    re.I,
)
# Where a sentence says what a thing is made of, the answer follows the cue: "made mainly
# from rye", "It's mostly smoked eel", "The gates are of bronze".
_MATERIAL_CUE = re.compile(
    r"\b(?:made|built|constructed|cast|carved)"
    r"(?:\s+(?:mainly|mostly|largely|chiefly|entirely|wholly|partly))?"
    # "made in bronze", not "made in 1791", "made in Sheffield", "built in the 1790s".
    r"\s+(?:out of|of|from|with|in(?=\s+(?!the\b|an?\b)[a-z]))\s"
    # "Its roof is covered in Delbury slate", "clad with copper".
    r"|\b(?:covered|clad|faced|roofed|paved|lined|coated|thatched|tiled)"
    r"\s+(?:in|with)\s(?!the\b|an?\b)"
    r"|\b(?:mainly|mostly|largely|chiefly|entirely|wholly) (?:of |from )?"
    r"|\bmain ingredients? (?:is|are) |\bconsists? (?:mainly |mostly )?of "
    r"|\b(?:is|are|was|were) of ",
    re.I,
)

_CLOCK_QUESTION = re.compile(
    r"^\s*(at |by |until )?what time\b"
    # Opening hours are times of day: "When does the bakery open (in the morning)?",
    # "When does the pool close on Fridays?".
    r"|^\s*when (do|does|is|are)\b.*\b(opens?|closes?|shuts?)\b"
    r"|^\s*when\b.*\b(in the (morning|afternoon|evening)|at night)\b",
    re.I,
)
CLOCK_TIME = re.compile(
    r"\b\d{1,2}(?:[.:]\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.|o'clock)(?!\w)|\b\d{1,2}:\d{2}\b"
    r"|\b(?:noon|midday|midnight)\b",
    re.I,
)
"""A time of day: "5.30 pm", "10:15", "noon"."""

_PERSON_QUESTION = re.compile(r"^\s*(who|whom|whose)\b", re.I)
# "What is the mascot called?", "What do locals call the building?": a name is asked.
_CALLED_QUESTION = re.compile(
    r"^\s*what(\s+is|\s+are|\s+was|\s+were|'s)\b.*\bcalled\b"
    r"|^\s*what (do|does|did)\b.*\bcall\b",
    re.I,
)
# A name a sentence gives something: "named him Bramble", "the nickname the Toffee Box",
# "is called Moth", "renamed Morning Plover", "known as the Ark".
_NAMING_CUE = _words("called named renamed nicknamed christened dubbed nickname nicknames titled")
_NAMED_OBJECT = _words("him her it them the a an")
_PLACE_QUESTION = re.compile(
    r"^\s*(where|(in |from |to |at )?(what|which) (city|country|town|village|place|region"
    r"|province|state|county|island|river|lake|sea|capital)"
    # The capital is a place, whose name is one word as often as two.
    r"|what(\s+is|\s+was|'s) the capital)\b",
    re.I,
)
STREET_WORDS = _words(
    "street road lane avenue square drive close row terrace crescent way place hill gate walk court"
)
"""Words that end a street's name ("Mill Lane"): an address, not a person."""
PRONOUNS = frozenset(["he", "she", "they", "his", "her", "their"])
"""A sentence opening with one of these names its person in the sentence before."""


_FREQUENCY_QUESTION = re.compile(r"^\s*how (often|frequently)\b|\bhow many times a\b", re.I)
FREQUENCY = re.compile(
    r"\bevery (?:(?:other|second|third|fourth|few|\d+\w*|one|two|three|four|five|six|ten)\s)?"
    r"[a-z]+|\b(?:hourly|daily|nightly|weekly|fortnightly|monthly|quarterly|yearly|annually)\b"
    r"|\b(?:once|twice|\w+ times) (?:a|an|per|each) [a-z]+",
    re.I,
)
"""How often something happens: "every second Saturday", "weekly", "twice a year"."""


_POSTCODE_QUESTION = re.compile(r"\b(post ?codes?|postal codes?|zip codes?|zip)\b", re.I)
POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}\b|\b\d{5}(?:-\d{4})?\b")
"""A postcode or zip code: "KV7 3RL", "SW1A 1AA", "02139"."""


_VERSION_QUESTION = re.compile(
    r"\b(which|what) (\w+ )?(version|release|firmware)\b"
    r"|\b(version|release|firmware) (number )?(of|for|did|was|that|is|does)\b",
    re.I,
)
VERSION = re.compile(r"\bv?\d+(?:\.\d+)+[a-z]?\b", re.I)
"""A version number: "v3.8.0", "2.7", "18.12"."""


def asks_for_version(question: str) -> bool:
    """Whether ``question`` asks for a version, release or firmware ("Which release of
    tarnlib fixed ...", "the minimum Node version for glimmerpack 5")."""
    return bool(_VERSION_QUESTION.search(question))


def versions_in(text: str) -> frozenset[str]:
    """The version numbers ``text`` names, without a leading "v" ("3.8.0")."""
    return frozenset(_bare_version(match) for match in VERSION.finditer(text))


def _bare_version(match: re.Match[str]) -> str:
    return match.group().casefold().lstrip("v")


def version_positions(sentence: str, named: frozenset[str], word_starts: list[int]) -> list[int]:
    """Indexes (into the words starting at ``word_starts``) of the words that start a
    version number in ``sentence`` other than the ``named`` ones (:func:`versions_in` of
    the question: "3.8" in "Which release dropped Python 3.8?")."""
    starts = {
        match.start() for match in VERSION.finditer(sentence) if _bare_version(match) not in named
    }
    return [index for index, start in enumerate(word_starts) if start in starts]


def asks_for_postcode(question: str) -> bool:
    """A postcode: "What is the postcode of ..."."""
    return bool(_POSTCODE_QUESTION.search(question))


def asks_for_frequency(question: str) -> bool:
    """How often: "How often is the market held?"; "every 12 minutes" answers it."""
    return bool(_FREQUENCY_QUESTION.search(question))


def match_positions(pattern: re.Pattern[str], sentence: str, word_starts: list[int]) -> list[int]:
    """Indexes (into the words starting at ``word_starts``) of the words that start a
    match of ``pattern`` (:data:`FREQUENCY`, :data:`POSTCODE`) in ``sentence``."""
    starts = {match.start() for match in pattern.finditer(sentence)}
    return [index for index, start in enumerate(word_starts) if start in starts]


def asks_for_colour(question: str) -> bool:
    """A colour: "What colour is the male ember finch?"."""
    return bool(_COLOUR_QUESTION.search(question))


def asks_for_material(question: str) -> bool:
    """What a thing is made of: "the main ingredient of", "made of", "what material"."""
    return bool(_MATERIAL_QUESTION.search(question))


def asks_for_clock_time(question: str) -> bool:
    """A time of day: "What time does the market open?"."""
    return bool(_CLOCK_QUESTION.match(question))


def asks_for_person(question: str) -> bool:
    """A person: "Who founded ...", whose name is no street's ("Mill Lane")."""
    return bool(_PERSON_QUESTION.match(question))


def naming_positions(words: list[str]) -> set[int]:
    """Indexes of the capitalised words right after a naming cue in ``words`` ("Staff
    named him Bramble", "known as the Ark"): the name the sentence gives a thing."""
    lower = [word.casefold() for word in words]
    found: set[int] = set()
    for index, word in enumerate(lower):
        if word not in _NAMING_CUE and not (word == "as" and index and lower[index - 1] == "known"):
            continue
        after = index + 1
        while after < len(words) and lower[after] in _NAMED_OBJECT:
            after += 1
        while after < len(words) and words[after][:1].isupper():
            found.add(after)
            after += 1
    return found


def in_street_name(words: list[str], index: int) -> bool:
    """Whether ``words[index]`` is part of a street's name ("Mill Lane"): no person."""
    following = words[index + 1] if index + 1 < len(words) else ""
    return words[index].casefold() in STREET_WORDS or (
        following[:1].isupper() and following.casefold() in STREET_WORDS
    )


def starts_a_name(words: list[str], question_words: frozenset[str]) -> bool:
    """Whether a sentence's first word begins a name: the next word is capitalised and
    no question word ("Delphine Wakeham, who won two titles, ..."; not "Tours of ..." or
    "Join Trellis Robotics ..." for a question about Trellis Robotics)."""
    if len(words) < 2 or not words[1][:1].isupper():
        return False
    return words[1].casefold() not in NOT_NAMES | question_words


_PLACE_KIND_QUESTION = re.compile(
    r"\b(?:what|which) (country|river|lake|sea|island|town|city|village|county|region"
    r"|province|state|street|road|mountain|hill|valley)\b",
    re.I,
)
PLACE_KINDS = STREET_WORDS | _words(
    "country river lake sea island town city village county region province state mountain"
    " mount valley canal bridge forest bay loch estuary brook stream"
)
"""Words that say what kind of place a name is ("the river Dresk", "Quay Street")."""


def asked_place_kind(question: str) -> str | None:
    """The kind of place ``question`` asks for: "country" in "In which country ..."."""
    match = _PLACE_KIND_QUESTION.search(question)
    return match.group(1).casefold() if match else None


def place_kinds_of(words: list[str], span: list[int]) -> set[str]:
    """The kinds of place a name (the words at ``span``) is said to be: its own kind
    words ("River Weyle", "Quay Street") and a lower-case one before it ("the river
    Dresk"), a capitalised one after it; a street word stands for "street"."""
    found = [words[index].casefold() for index in span]
    before = words[span[0] - 1] if span[0] > 0 else ""
    after = words[span[-1] + 1] if span[-1] + 1 < len(words) else ""
    if before.islower():
        found.append(before)
    if after[:1].isupper():  # "Quay Street" where "Street" is the question's own word
        found.append(after.casefold())
    kinds = {word for word in found if word in PLACE_KINDS}
    return {"street" if kind in STREET_WORDS else kind for kind in kinds}


def spans(positions: list[int]) -> list[list[int]]:
    """``positions`` grouped into runs of neighbours (the words of one name)."""
    spans: list[list[int]] = []
    for position in positions:
        if spans and position == spans[-1][-1] + 1:
            spans[-1].append(position)
        else:
            spans.append([position])
    return spans


def places_of_kind(words: list[str], positions: list[int], kind: str) -> list[int]:
    """``positions`` (of name words in ``words``) less the names said to be another kind
    of place than ``kind`` ("the river Dresk" where a country is asked for) and, where a
    street is asked for, those without a street word ("Saddler Lane", not "Grace")."""
    kept: list[int] = []
    for span in spans(positions):
        kinds = place_kinds_of(words, span)
        if kind in kinds or not (kinds or kind == "street"):
            kept.extend(span)
    return kept


def is_located(words: list[str], index: int) -> bool:
    """Whether the name at ``words[index]`` is said to be where something is: right
    after "in", "at", "near" or "from" ("born in Port Ainsley")."""
    return index > 0 and words[index - 1].casefold() in ("in", "at", "near", "from")


LOCATIVE_SHARE = 0.75
"""Answer share, where a place is asked for, of a place named as where something is
("born in Port Ainsley"); a name said to be the asked kind of place ("River Weyle") has
the full share, 1."""


def place_share(words: list[str], answers: list[int], kind: str | None, located: bool) -> float:
    """How full an answer the names at ``answers`` are to a question asking for a place
    (of ``kind``, when it names one): 1 for a name said to be of that kind,
    :data:`LOCATIVE_SHARE` for one said to be where something is (with ``located``),
    else 0."""
    if kind is not None and any(kind in place_kinds_of(words, span) for span in spans(answers)):
        return 1.0
    if located and any(is_located(words, index) for index in answers):
        return LOCATIVE_SHARE
    return 0.0


def asks_for_place(question: str) -> bool:
    """A place, whose name is one word as often as two ("Kerlingen", "Port Arden")."""
    return bool(_PLACE_QUESTION.match(question))


def asks_for_word_of_kind(question: str) -> str | None:
    """The lower-case kind a question asks for (a key of :data:`WORDS_OF_KIND`): "What
    currency is used in ...", "Which fruit ...", "What animal is the mascot ..."."""
    match = _KIND_QUESTION.search(question)
    if match is None:
        return None
    return (match.group("kind") or match.group("attribute")).casefold()


def named_thing(question: str) -> str | None:
    """The thing whose name is asked for: "ship" in "What is the name of the ship in
    ..."; a name answers it only when it stands next to that word ("The ship, the Sable
    Heron, ...")."""
    match = _NAME_OF.search(question)
    return match.group(1).casefold() if match else None


def material_positions(sentence: str, word_starts: list[int]) -> list[int]:
    """Indexes (into the words starting at ``word_starts``) of the words right after
    each place ``sentence`` says what a thing is made of."""
    positions: list[int] = []
    for match in _MATERIAL_CUE.finditer(sentence):
        after = [index for index, start in enumerate(word_starts) if start >= match.end()]
        if after:
            positions.append(after[0])
    return positions


def expected_answer(question: str, shape: QuestionShape | None = None) -> str | None:
    """The kind of answer ``question`` asks for: ``number`` (a time of day too), ``date``,
    ``frequency`` ("every second Saturday"), ``postcode``, ``version`` ("v3.8.0"),
    ``person``, ``place``, another ``name``, ``colour``, ``material`` (what a thing is
    made of), a lower-case kind of :data:`WORDS_OF_KIND` (``currency``, ``fruit``,
    ``animal``, ``breed``), or None."""
    shape = shape or analyse_question(question)
    if asks_for_frequency(question):
        return "frequency"
    if asks_for_postcode(question):
        return "postcode"
    if asks_for_clock_time(question):
        return "number"  # a time of day, in the "clock" unit (measure.unit_kinds)
    if shape.expects is not None:
        return shape.expects
    if asks_for_version(question):
        return "version"
    thing = named_thing(question)
    if asks_for_person(question) or thing in _PERSON_NOUNS:
        return "person"
    kind = asks_for_word_of_kind(question)
    if kind is not None:
        return kind
    if asks_for_colour(question):
        return "colour"
    if asks_for_material(question):
        return "material"
    if asks_for_place(question):
        return "place"
    if _EXPECTS_NAME.match(question) or _CALLED_QUESTION.match(question):
        return "name"
    return None
