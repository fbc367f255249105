"""News articles: event frames rendered in a wire-story register, with highlights (the transfer domain).

An article has a dateline and a lead sentence that packs two to four facts (inverted pyramid), then the other facts,
an official's quote, background lines, one or two distractors (an earlier event with other numbers and names) and a
closer: about 140-320 words, roughly twice a post. Highlights are 3-4 short lines that restate the facts with the
article's own phrases, one line per fact or per group of facts, newline-separated as in CNN/DailyMail; now and then
they leave a fact out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import pools as P
from .common import fill, millions, n_words, thousands, wchoice
from .posts import draw_distinct
from .schema import Distractor, DistractorValue, FactValue, Slot, dollars, integer, pick


@dataclass(frozen=True)
class EventType:
    name: str
    weight: float
    slots: tuple[Slot, ...]
    leads: tuple[tuple[tuple[str, ...], str], ...]  # multi-fact lead sentences, {p_SLOT}
    highlights: tuple[tuple[tuple[str, ...], str], ...]  # highlight lines; every slot has a one-slot line
    background: tuple[str, ...]
    distractors: tuple[Distractor, ...]
    closers: tuple[str, ...]
    n_facts: tuple[int, int] = (4, 6)

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)


@dataclass
class ArticleFrame:
    id: str
    split: str
    event: EventType
    ctx: dict[str, str]
    facts: list[FactValue]
    distractors: list[DistractorValue]
    article: str = ""
    highlights: str = ""
    hl_meta: dict[str, object] | None = None


def _full_name(rng: random.Random, ctx: dict[str, str]) -> str:
    return f"{rng.choice(P.MALE_NAMES + P.FEMALE_NAMES)} {rng.choice(P.SURNAMES)}"


def _score(rng: random.Random, ctx: dict[str, str]) -> str:
    a = rng.randint(1, 6)
    return f"{a}-{rng.randint(0, a - 1)}"


def _team(rng: random.Random, ctx: dict[str, str]) -> str:
    return f"{rng.choice(P.US_CITIES)} {rng.choice(P.TEAM_MASCOTS)}"


def _millions(lo: float, hi: float):
    return lambda rng, ctx: millions(rng, lo, hi)


def _thousands(lo: int, hi: int, step: int):
    return lambda rng, ctx: thousands(rng, lo, hi, step)


CITY = Slot(
    "city",
    "word",
    pick(P.US_CITIES),
    ("{v}",),
    ("Residents of {p} gathered to watch as crews worked.", "Many people in {p} heard the news quickly."),
    ("{p}",),
    "Where did it happen?",
    bare=True,
    core=True,
)
DAY = Slot(
    "day",
    "word",
    pick(P.WEEKDAYS),
    ("on {v}",),
    ("It all began {p} morning.", "The first calls came in {p} afternoon."),
    ("{p}",),
    "When did it happen?",
    bare=True,
)

FIRE = EventType(
    name="fire",
    weight=0.18,
    slots=(
        CITY,
        DAY,
        Slot(
            "building",
            "word",
            pick(P.BUILDINGS),
            ("{v}",),
            ("Flames spread quickly through the {p}.", "The {p} was badly damaged."),
            bare=True,
            core=True,
        ),
        Slot(
            "injured",
            "num",
            integer(2, 40),
            ("{v} people were injured", "{v} people were hurt"),
            ("Officials said {p}, two of them seriously.", "In total, {p}, according to the fire department."),
        ),
        Slot(
            "chief",
            "word",
            _full_name,
            ("Fire Chief {v}",),
            ('"We were lucky it was not worse," said {p}.', "{p} said crews arrived within minutes."),
            bare=True,
        ),
        Slot(
            "damage",
            "num",
            _millions(0.3, 9.5),
            ("{v} in damage",),
            ("The fire caused an estimated {p}.", "Early estimates show {p}."),
        ),
        Slot(
            "cause",
            "word",
            pick(P.FIRE_CAUSES),
            ("caused by {v}", "started by {v}"),
            ("Investigators believe the fire was {p}.", "The blaze was likely {p}, officials said."),
        ),
    ),
    leads=(
        (
            ("building", "city", "day", "injured"),
            "A fire tore through a {p_building} in {p_city} {p_day}, and {p_injured}.",
        ),
        (("building", "city", "day"), "A fire tore through a {p_building} in {p_city} {p_day}, officials said."),
        (("building", "city"), "A fire destroyed a {p_building} in {p_city}, officials said."),
    ),
    highlights=(
        (("building", "city", "day"), "Fire hits a {p_building} in {p_city} {p_day}"),
        (("building", "city"), "Fire destroys a {p_building} in {p_city}"),
        (("injured",), "{p_injured}"),
        (("chief",), "{p_chief} says crews were lucky"),
        (("damage",), "Fire caused an estimated {p_damage}"),
        (("cause",), "Investigators say it was {p_cause}"),
        (("day",), "Fire broke out {p_day}"),
        (("city",), "Fire in {p_city}"),
        (("building",), "Fire at a {p_building}"),
    ),
    background=(
        "Crews from three nearby towns helped fight the blaze.",
        "Several roads were closed for hours.",
        "Neighbors said they smelled smoke before they saw flames.",
        "The Red Cross is helping families who lost their homes.",
        "It took firefighters more than two hours to bring the fire under control.",
        "Smoke could be seen for miles.",
    ),
    distractors=(
        Distractor("injured", "similar fire injured {v} people", ("A {p} two years ago.",)),
        Distractor("chief", "Deputy Chief {v}", ("{p} said the building had passed an inspection in the spring.",)),
        Distractor("damage", "{v} in repairs", ("The building had just finished {p} last year.",)),
        Distractor("city", "crews from {v}", ("Extra {p} were called in to help.",)),
    ),
    closers=(
        "The investigation is ongoing.",
        "Officials urged residents to check their smoke alarms.",
        "A fund has been set up for the families.",
    ),
)


def _storm_kind(rng: random.Random, ctx: dict[str, str]) -> str:
    return rng.choice(P.STORM_KINDS)


STORM = EventType(
    name="storm",
    weight=0.16,
    slots=(
        CITY,
        DAY,
        Slot(
            "kind",
            "word",
            _storm_kind,
            ("{v}",),
            ("The {p} was the worst in years.", "Forecasters had warned that the {p} could be severe."),
            bare=True,
            core=True,
        ),
        Slot(
            "rain",
            "num",
            integer(2, 14),
            ("{v} inches of rain",),
            ("The area got {p} in less than a day.", "Forecasters said {p} fell overnight."),
        ),
        Slot(
            "power",
            "num",
            _thousands(1200, 90000, 100),
            ("{v} homes lost power", "{v} homes were without power"),
            ("At the peak, {p}.", "Utility crews said {p} across the region."),
        ),
        Slot(
            "mayor",
            "word",
            _full_name,
            ("Mayor {v}",),
            ('"Please stay off the roads," said {p}.', "{p} declared a local emergency."),
            bare=True,
        ),
        Slot(
            "wind",
            "num",
            integer(40, 110, 5),
            ("winds of {v} mph", "gusts of {v} mph"),
            ("The storm brought {p} across the area.", "Weather officials measured {p} near the airport."),
        ),
        Slot(
            "schools",
            "num",
            integer(5, 80),
            ("{v} schools closed",),
            ("The next morning {p} for the day.", "Officials said {p} because of the damage."),
        ),
    ),
    leads=(
        (("kind", "city", "day"), "A powerful {p_kind} hit {p_city} {p_day}, knocking down trees and power lines."),
        (("kind", "city"), "A powerful {p_kind} swept through {p_city}, officials said."),
    ),
    highlights=(
        (("kind", "city", "day"), "Powerful {p_kind} hits {p_city} {p_day}"),
        (("kind", "city"), "Powerful {p_kind} hits {p_city}"),
        (("power",), "{p_power}"),
        (("rain",), "Area got {p_rain}"),
        (("mayor",), "{p_mayor} urges people to stay home"),
        (("wind",), "Storm brought {p_wind}"),
        (("schools",), "{p_schools} the next day"),
        (("day",), "Storm hit {p_day}"),
        (("city",), "Storm in {p_city}"),
        (("kind",), "A {p_kind} hit the region"),
    ),
    background=(
        "Many trees fell onto cars and houses.",
        "Some flights were canceled at the airport.",
        "Residents were asked to avoid travel.",
        "Shelters opened at two high schools.",
        "Crews worked through the night to clear roads.",
        "More bad weather is expected later this week.",
    ),
    distractors=(
        Distractor("power", "{v} homes were damaged", ("Last winter {p} in a similar storm.",)),
        Distractor("rain", "record of {v} inches", ("The {p} was set many years ago.",)),
        Distractor("mayor", "Governor {v}", ("{p} is expected to visit the area.",)),
        Distractor("city", "towns near {v}", ("Damage was lighter in {p}.",)),
    ),
    closers=(
        "Officials said it could take days to restore power everywhere.",
        "Residents can call the city hotline for help.",
        "Cleanup is expected to take weeks.",
    ),
)

ARREST = EventType(
    name="robbery",
    weight=0.15,
    slots=(
        CITY,
        DAY,
        Slot(
            "store",
            "word",
            pick(P.STORE_KINDS),
            ("{v}",),
            ("The {p} had just opened for the day.", "Workers at the {p} hid in a back room."),
            bare=True,
            core=True,
        ),
        Slot(
            "suspect",
            "word",
            _full_name,
            ("{v}",),
            ("Police arrested {p} a few hours later.", "Officers later took {p} into custody."),
            bare=True,
        ),
        Slot(
            "age",
            "num",
            integer(18, 60),
            ("{v} years old",),
            ("The suspect is {p}, police said.", "Police said the man is {p}."),
        ),
        Slot(
            "cash",
            "num",
            dollars(500, 60000, 100),
            ("{v} in cash", "{v} in cash and jewelry"),
            ("The robber took {p}, police said.", "Police said the man left with {p}."),
        ),
        Slot(
            "officer",
            "word",
            _full_name,
            ("Officer {v}",),
            ('"This was a brazen crime," said {p}.', "{p} asked witnesses to come forward."),
            bare=True,
        ),
        Slot(
            "charge",
            "word",
            pick(P.CHARGES),
            ("charged with {v}",),
            ("The suspect was {p} and is being held in the county jail.", "He has been {p}, police said."),
        ),
    ),
    leads=(
        (("store", "city", "day"), "Police say a man robbed a {p_store} in {p_city} {p_day}."),
        (("store", "city"), "A {p_store} in {p_city} was robbed, police said."),
    ),
    highlights=(
        (("store", "city"), "A {p_store} in {p_city} was robbed"),
        (("suspect", "charge"), "Police arrested {p_suspect}, who was {p_charge}"),
        (("suspect",), "Police arrested {p_suspect}"),
        (("cash",), "Robber took {p_cash}"),
        (("officer",), "{p_officer} calls it a brazen crime"),
        (("charge",), "Suspect was {p_charge}"),
        (("age",), "Suspect is {p_age}"),
        (("day",), "Robbery happened {p_day}"),
        (("city",), "Robbery in {p_city}"),
        (("store",), "A {p_store} was robbed"),
    ),
    background=(
        "No one was hurt during the robbery.",
        "The store was closed for the rest of the day.",
        "Security cameras captured the whole thing.",
        "Customers said they were shaken.",
        "Police asked anyone with information to call them.",
    ),
    distractors=(
        Distractor("cash", "similar robbery netted {v}", ("Last month a {p} at a store nearby.",)),
        Distractor("suspect", "witness {v}", ("A {p} called police right away.",)),
        Distractor("age", "clerk is {v}", ("The {p} and was not hurt.",)),
        Distractor("officer", "Sergeant {v}", ("{p} said the case is still open.",)),
    ),
    closers=(
        "The suspect is due in court next week.",
        "The investigation continues.",
        "Police said more arrests are possible.",
    ),
)

COMPANY = EventType(
    name="company",
    weight=0.14,
    slots=(
        CITY,
        DAY,
        Slot(
            "company",
            "word",
            pick(P.COMPANIES),
            ("{v}",),
            ("Shares of {p} rose after the news.", "The plan is the biggest in the history of {p}."),
            bare=True,
            core=True,
        ),
        Slot(
            "jobs",
            "num",
            integer(40, 2500, 10),
            ("{v} new jobs",),
            ("The company said the plant will bring {p}.", "Officials expect {p} over three years."),
        ),
        Slot(
            "investment",
            "num",
            _millions(5, 400),
            ("investment of {v}",),
            ("The project is an {p}, the company said.", "The company described it as an {p}."),
        ),
        Slot(
            "ceo",
            "word",
            _full_name,
            ("chief executive {v}", "CEO {v}"),
            ('"This is a big day for us," said {p}.', "The deal was announced by {p}."),
            bare=True,
        ),
        Slot(
            "product",
            "word",
            pick(P.PRODUCTS),
            ("make {v}", "build {v}"),
            ("The new plant will {p} for customers across the country.", "Workers there will {p}."),
        ),
        Slot(
            "open",
            "word",
            pick(P.MONTHS),
            ("open in {v}",),
            ("The plant is expected to {p} next year.", "The company hopes to {p} if permits come through."),
        ),
    ),
    leads=(
        (("company", "city", "day"), "{p_company} announced {p_day} that it will open a new plant in {p_city}."),
        (("company", "city"), "{p_company} plans to build a new plant in {p_city}, the company said."),
    ),
    highlights=(
        (("company", "city"), "{p_company} will open a plant in {p_city}"),
        (("jobs",), "Plant will bring {p_jobs}"),
        (("investment",), "It is an {p_investment}"),
        (("ceo",), "It is a big day, says {p_ceo}"),
        (("product",), "Plant will {p_product}"),
        (("open",), "Plant set to {p_open}"),
        (("day",), "Announcement came {p_day}"),
        (("city",), "New plant in {p_city}"),
        (("company",), "{p_company} is expanding"),
    ),
    background=(
        "Local leaders have worked for years to bring new jobs to the area.",
        "Construction is expected to start soon.",
        "The company has grown quickly in recent years.",
        "Some residents worry about traffic near the site.",
        "The state helped with the deal.",
    ),
    distractors=(
        Distractor("jobs", "cut {v} jobs", ("Two years ago the company {p} at another site.",)),
        Distractor("investment", "{v} in tax breaks", ("The city offered {p} to win the project.",)),
        Distractor("ceo", "Mayor {v}", ("{p} called the news a win for the region.",)),
        Distractor("city", "headquarters in {v}", ("The company has its {p}.",)),
    ),
    closers=(
        "Hiring is expected to begin soon.",
        "The company did not say how much workers will be paid.",
        "More details will be shared at a public meeting.",
    ),
)

SPORTS = EventType(
    name="sports",
    weight=0.13,
    slots=(
        Slot(
            "team",
            "word",
            _team,
            ("{v}",),
            ("It was a big night for {p} and their fans.", "The result keeps {p} near the top of the table."),
            bare=True,
            core=True,
        ),
        DAY,
        Slot(
            "score",
            "num",
            _score,
            ("{v} win", "{v} victory"),
            ("It was a {p} in front of a loud crowd.", "The {p} came after a slow start."),
        ),
        Slot(
            "opponent",
            "word",
            _team,
            ("over the {v}",),
            ("The team earned the win {p} after a slow start.", "It was their first win {p} in years."),
            bare=True,
        ),
        Slot(
            "player",
            "word",
            _full_name,
            ("forward {v}", "striker {v}"),
            ("The star of the night was {p}, who scored twice.", "Both goals came from {p}."),
            bare=True,
        ),
        Slot(
            "attendance",
            "num",
            _thousands(3000, 60000, 100),
            ("{v} fans",),
            ("The game drew {p} to the stadium.", "A crowd of {p} watched the game."),
        ),
        Slot(
            "coach",
            "word",
            _full_name,
            ("Coach {v}",),
            ('"I am proud of this group," said {p}.', "{p} praised the defense after the game."),
            bare=True,
        ),
    ),
    leads=(
        (("team", "score", "opponent", "day"), "{p_team} earned a {p_score} {p_opponent} {p_day}."),
        (("team", "score", "opponent"), "{p_team} earned a {p_score} {p_opponent} in a tense game."),
        (("team", "opponent"), "{p_team} came out on top {p_opponent} in a tense game."),
    ),
    highlights=(
        (("team", "score", "opponent"), "{p_team} earn a {p_score} {p_opponent}"),
        (("player",), "Goals from {p_player}"),
        (("attendance",), "Game drew {p_attendance}"),
        (("coach",), "{p_coach} is proud of the group"),
        (("score",), "It ended in a {p_score}"),
        (("team",), "Big night for {p_team}"),
        (("opponent",), "Win came {p_opponent}"),
        (("day",), "Game was played {p_day}"),
    ),
    background=(
        "The home side controlled most of the second half.",
        "Fans stayed long after the final whistle.",
        "The visitors had won their last three games.",
        "Rain made the field slow and heavy.",
        "The team has struggled with injuries this season.",
    ),
    distractors=(
        Distractor("score", "lost {v} last month", ("When the two teams met before, the home side {p}.",)),
        Distractor("attendance", "record crowd of {v}", ("The {p} was set years ago.",)),
        Distractor("player", "goalkeeper {v}", ("Their {p} made several big saves.",)),
        Distractor("coach", "assistant coach {v}", ("Their {p} was sent off late in the game.",)),
    ),
    closers=(
        "The two teams meet again next month.",
        "The next game is on the road.",
        "The win moves the team closer to the playoffs.",
    ),
    n_facts=(4, 6),
)

RESCUE = EventType(
    name="rescue",
    weight=0.12,
    slots=(
        Slot(
            "park",
            "word",
            pick(P.PARKS),
            ("{v} State Park",),
            ("Searchers focused on a remote part of {p}.", "The trail is one of the hardest in {p}."),
            bare=True,
            core=True,
        ),
        DAY,
        Slot(
            "hikers",
            "num",
            integer(2, 9),
            ("{v} hikers",),
            ("Rescuers found {p} near a steep ridge.", "Teams reached {p} before dark."),
            core=True,
        ),
        Slot(
            "hours",
            "num",
            integer(6, 60),
            ("after {v} hours", "after more than {v} hours"),
            ("They were found {p} in the cold.", "The group was reached {p}, officials said."),
        ),
        Slot(
            "leader",
            "word",
            _full_name,
            ("Sergeant {v}",),
            ('"They did everything right," said {p}.', "{p} led the search team."),
            bare=True,
        ),
        Slot(
            "city",
            "word",
            pick(P.US_CITIES),
            ("{v}",),
            ("The park is about an hour from {p}.", "Most of the hikers live in {p}."),
            bare=True,
        ),
        Slot(
            "temp",
            "num",
            integer(10, 40),
            ("{v} degrees",),
            ("Temperatures dropped to {p} overnight.", "It was only {p} when they were found."),
        ),
    ),
    leads=(
        (("hikers", "park", "day"), "Rescuers found {p_hikers} who went missing in {p_park} {p_day}."),
        (("hikers", "park"), "Rescuers found {p_hikers} who went missing in {p_park}, officials said."),
    ),
    highlights=(
        (("hikers", "park"), "{p_hikers} rescued in {p_park}"),
        (("hours",), "They were found {p_hours}"),
        (("leader",), "{p_leader} says they did everything right"),
        (("temp",), "Temperatures fell to {p_temp}"),
        (("day",), "Search began {p_day}"),
        (("city",), "Park is near {p_city}"),
        (("hikers",), "{p_hikers} are safe"),
        (("park",), "Rescue in {p_park}"),
    ),
    background=(
        "The group had planned a short day hike.",
        "Cell service in the area is poor.",
        "A helicopter joined the search at first light.",
        "All of the hikers were checked by medics.",
        "Officials reminded visitors to carry extra water and a map.",
    ),
    distractors=(
        Distractor("hikers", "{v} volunteers", ("More than {p} joined the search.",), draw=integer(10, 90)),
        Distractor("hours", "walked for {v} hours", ("The group had {p} before they got lost.",)),
        Distractor("leader", "Ranger {v}", ("{p} said the trail is well marked.",)),
        Distractor("temp", "reached {v} in the afternoon", ("It had {p} the day before.",)),
    ),
    closers=(
        "None of the hikers needed to stay in the hospital.",
        "The trail will stay closed for now.",
        "Officials thanked the volunteers.",
    ),
)

COUNCIL = EventType(
    name="council",
    weight=0.12,
    slots=(
        CITY,
        DAY,
        Slot(
            "project",
            "word",
            pick(P.PROJECTS),
            ("{v}",),
            ("Supporters say {p} is long overdue.", "Work on {p} could start within a year."),
            bare=True,
            core=True,
        ),
        Slot(
            "vote",
            "num",
            _score,
            ("{v} vote",),
            ("The measure passed on a {p} after a long debate.", "It was approved on a {p}."),
        ),
        Slot(
            "budget",
            "num",
            _millions(1, 60),
            ("costs {v}",),
            ("The project {p} over five years.", "City staff said the plan {p}."),
        ),
        Slot(
            "member",
            "word",
            _full_name,
            ("council member {v}",),
            ("The plan was pushed by {p}.", "The idea came from {p}."),
            bare=True,
        ),
        Slot(
            "residents",
            "num",
            integer(20, 300),
            ("{v} residents",),
            ("More than {p} spoke at the meeting.", "The meeting drew {p}."),
        ),
        Slot(
            "opening",
            "word",
            pick(P.MONTHS),
            ("done by {v}",),
            ("The city hopes to have it {p} next year.", "Officials want it {p} if all goes well."),
        ),
    ),
    leads=(
        (("city", "project", "day"), "The city council in {p_city} approved {p_project} {p_day}."),
        (("city", "project"), "Leaders in {p_city} approved {p_project} this week."),
    ),
    highlights=(
        (("city", "project"), "{p_city} approves {p_project}"),
        (("vote",), "Measure passed on a {p_vote}"),
        (("budget",), "The project {p_budget}"),
        (("member",), "Plan was pushed by {p_member}"),
        (("opening",), "City hopes to have it {p_opening}"),
        (("residents",), "{p_residents} spoke at the meeting"),
        (("day",), "Vote came {p_day}"),
        (("project",), "Council backs {p_project}"),
        (("city",), "Vote in {p_city}"),
    ),
    background=(
        "The debate lasted more than three hours.",
        "Some business owners spoke against the plan.",
        "The city has talked about the idea for years.",
        "Several speakers asked for more public input.",
        "The vote followed months of planning.",
    ),
    distractors=(
        Distractor("budget", "rejected a {v} plan", ("Last year the council {p} for a stadium.",)),
        Distractor("residents", "{v} signatures", ("A petition against the plan got {p}.",), draw=integer(300, 2000)),
        Distractor("member", "Mayor {v}", ("{p} has not said whether she supports it.",)),
        Distractor("city", "officials from {v}", ("Visiting {p} watched the vote.",)),
    ),
    closers=(
        "The plan now goes to the mayor.",
        "A final design will be shown in the spring.",
        "Residents can comment on the city website.",
    ),
)

EVENTS: tuple[EventType, ...] = (FIRE, STORM, ARREST, COMPANY, SPORTS, RESCUE, COUNCIL)
MIN_WORDS, MAX_WORDS = 130, 250
GENERIC_NEWS = (
    "Officials said more information would be released later.",
    "Several witnesses described what they saw.",
    "Photos shared online showed the scene.",
    "A spokesperson declined to give more details.",
    "The news spread quickly on social media.",
    "Some residents said they were not surprised.",
    "Others said they hoped things would return to normal soon.",
    "City leaders promised a full review.",
    "Local television carried the story through the evening.",
    "People who live nearby said it was a long day.",
    "It was not the first time the area has made headlines this year.",
    "Reporters were kept back for most of the day.",
    "Further updates are expected in the coming days.",
    "Community groups offered help to anyone affected.",
)
DATELINES = ("{city} (World News) -- ", "{city} -- ", "(World News) -- ", "")


def sample_article(rng: random.Random, ident: str, split: str) -> ArticleFrame:
    ev = wchoice(rng, EVENTS, [e.weight for e in EVENTS])
    core = [s for s in ev.slots if s.core]
    rest = [s for s in ev.slots if not s.core]
    rng.shuffle(rest)
    k = max(len(core), min(rng.randint(*ev.n_facts), len(ev.slots)))
    chosen = sorted(core + rest[: k - len(core)], key=ev.slots.index)
    ctx: dict[str, str] = {}
    used: set[str] = set()
    facts = []
    for slot in chosen:
        value = draw_distinct(rng, slot.draw, ctx, used, slot.kind)
        template = rng.choice(slot.phrases)
        facts.append(FactValue(slot, value, template, fill(template, ctx, v=value)))
    names = {f.slot.name for f in facts}
    relevant = [d for d in ev.distractors if d.confuses in names]
    rng.shuffle(relevant)
    distractors = []
    for d in relevant[: rng.randint(1, 2)]:
        slot = ev.slot(d.confuses)
        value = draw_distinct(rng, d.draw or slot.draw, ctx, used, slot.kind)
        phrase = fill(d.phrase, ctx, v=value)
        distractors.append(DistractorValue(d, value, phrase, fill(rng.choice(d.sentences), ctx, p=phrase)))
    frame = ArticleFrame(ident, split, ev, ctx, facts, distractors)
    _render_article(rng, frame)
    _write_highlights(rng, frame)
    return frame


def _render_article(rng: random.Random, frame: ArticleFrame) -> None:
    ev = frame.event
    by_name = {f.slot.name: f for f in frame.facts}
    leads = [(s, t) for s, t in ev.leads if all(x in by_name for x in s)]
    covered: set[str] = set()
    lead = ""
    if leads:
        slots, template = leads[0] if rng.random() < 0.7 else rng.choice(leads)
        lead = fill(template, frame.ctx, **{f"p_{s}": by_name[s].phrase for s in slots})
        covered.update(slots)
    rest = [f for f in frame.facts if f.slot.name not in covered]
    rng.shuffle(rest)
    sentences = [fill(rng.choice(f.slot.sentences), frame.ctx, p=f.phrase) for f in rest]
    if not lead:
        lead = sentences.pop(0)
    background = list(ev.background)
    rng.shuffle(background)
    generic = list(GENERIC_NEWS)
    rng.shuffle(generic)
    n_bg = rng.randint(2, 4)
    # Inverted pyramid: facts tend to come early, background and distractors later (sort by a noisy rank).
    ranked = [(rng.uniform(0.0, 0.8), s) for s in sentences]
    ranked += [(rng.uniform(0.2, 1.0), s) for s in background[:n_bg] + [d.sentence for d in frame.distractors]]
    body = [s for _, s in sorted(ranked, key=lambda x: x[0])]
    body.append(rng.choice(ev.closers))
    # More background and wire-story lines up to a sampled length (articles run about twice a post).
    spare = generic + background[n_bg:]
    target = rng.randint(MIN_WORDS, MAX_WORDS)
    while n_words(" ".join([lead, *body])) < target and spare:
        body.insert(rng.randint(len(body) // 3, len(body) - 1), spare.pop())
    city = by_name["city"].phrase if "city" in by_name else ""
    dateline = rng.choice([d for d in DATELINES if city or "{city}" not in d]).format(city=city)
    paragraphs, current = [dateline + lead], []
    for s in body:
        current.append(s)
        if len(current) >= 3 or rng.random() < 0.3:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    frame.article = "\n\n".join(paragraphs)


def _write_highlights(rng: random.Random, frame: ArticleFrame) -> None:
    ev = frame.event
    by_name = {f.slot.name: f for f in frame.facts}
    todo = [f.slot.name for f in frame.facts]
    if len(todo) > 3 and rng.random() < 0.25:  # editors skip a detail now and then
        todo.pop(rng.randrange(1, len(todo)))
    lines: list[tuple[str, bool]] = []  # (line, starts with a fact phrase: its case must be kept)
    stated: list[str] = []
    multi = [(s, t) for s, t in ev.highlights if len(s) > 1 and all(x in todo for x in s)]
    if multi:
        slots, template = multi[0]
        lines.append((fill(template, frame.ctx, **{f"p_{s}": by_name[s].phrase for s in slots}), True))
        stated += slots
    singles = {s[0]: t for s, t in ev.highlights if len(s) == 1}
    for name in todo:
        if name in stated:
            continue
        template = singles[name]
        lines.append((fill(template, frame.ctx, **{f"p_{name}": by_name[name].phrase}), template.startswith("{")))
        stated.append(name)
    # 3-4 lines: fold extra one-fact lines into the previous line.
    while len(lines) > 4:
        last, keep_case = lines.pop()
        if not keep_case:
            last = last[:1].lower() + last[1:]
        lines[-1] = (f"{lines[-1][0]}; {last}", lines[-1][1])
    frame.highlights = "\n".join(line + "." for line, _ in lines)
    frame.hl_meta = {"facts": stated}
