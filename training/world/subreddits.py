"""The eleven subreddits of the world and their frame schemas (data, not code).

Each subreddit lists its fact slots, the questions its posters ask, the distractors that imitate its facts, filler
lines, and title topics. Weights follow the real TL;DR set loosely (r/relationships dominates). Template rules are in
``schema.py``; the test suite checks them on every generated post (phrase verbatim in post and TL;DR).
"""

from __future__ import annotations

import random

from . import pools as P
from .common import a_or_an
from .schema import Distractor, Question, Slot, Subreddit, dollars, integer, pick

# --------------------------------------------------------------------------------------------------- context helpers


def pronouns(gender: str, prefix: str = "") -> dict[str, str]:
    """he/him/his (and capitalised) for a person of ``gender`` ("M"/"F"), keys optionally prefixed."""
    he, him, his = ("he", "him", "his") if gender == "M" else ("she", "her", "her")
    return {
        f"{prefix}he": he, f"{prefix}him": him, f"{prefix}his": his,
        f"{prefix}He": he.capitalize(), f"{prefix}His": his.capitalize(),
    }  # fmt: skip


def name_of(gender_key: str):
    """A draw of a first name of the gender stored in ``ctx[gender_key]``."""
    return lambda rng, ctx: rng.choice(P.MALE_NAMES if ctx[gender_key] == "M" else P.FEMALE_NAMES)


def any_name(rng: random.Random, ctx: dict[str, str]) -> str:
    return rng.choice(P.MALE_NAMES + P.FEMALE_NAMES)


def female_name(rng: random.Random, ctx: dict[str, str]) -> str:
    return rng.choice(P.FEMALE_NAMES)


# --------------------------------------------------------------------------------------------------- relationships


def _rel_ctx(rng: random.Random) -> dict[str, str]:
    g = rng.choice("MF")
    pg = ("F" if g == "M" else "M") if rng.random() < 0.9 else g
    rel = (
        rng.choice(("boyfriend", "boyfriend", "husband"))
        if pg == "M"
        else rng.choice(("girlfriend", "girlfriend", "wife"))
    )
    return {"g": g, "pg": pg, "rel": rel, "Rel": rel.capitalize(), **pronouns(pg)}


RELATIONSHIPS = Subreddit(
    name="relationships",
    weight=0.28,
    make_ctx=_rel_ctx,
    slots=(
        Slot(
            "narrator",
            "num",
            lambda r, c: f"{r.randint(18, 40)}{c['g']}",
            ("I ({v})", "I [{v}]"),
            (
                "For context, {p} work full time and so does {he}.",
                "A bit of background: {p} am not usually the jealous type.",
                "Some context: {p} have never dealt with anything like this.",
            ),
            ("{p}",),
            "How old are you?",
            core=True,
        ),
        Slot(
            "partner",
            "num",
            lambda r, c: f"{r.randint(19, 45)}{c['pg']}",
            ("{rel} ({v})", "{rel} [{v}]"),
            (
                "My {p} has been acting distant lately.",
                "I love my {p} but something feels off.",
                "My {p} and I live together and mostly get along.",
            ),
            ("my {p}", "{p}"),
            "How old is your {rel}?",
            core=True,
        ),
        Slot(
            "duration",
            "num",
            integer(2, 12),
            ("together for {v} years", "dating for {v} years"),
            (
                "We have been {p} and it was great until recently.",
                "We've been {p} now.",
                "Honestly we have been {p} without any big fights.",
            ),
            ("{p}", "we've been {p}"),
            "How long have you been together?",
        ),
        Slot(
            "texting",
            "word",
            any_name,
            ("texting {his} coworker {v}", "texting a coworker named {v}"),
            (
                "Last week I found out {he} has been {p} every night.",
                "I noticed {he} keeps {p} late at night.",
                "A few days ago I saw that {he} was {p} again.",
            ),
            ("{he} keeps {p}", "{he} has been {p}", "caught {him} {p}"),
            "Who is {he} texting?",
            group="issue",
            bare=True,
            core=True,
        ),
        Slot(
            "money",
            "num",
            dollars(500, 9000, 100),
            ("spent {v} of our savings", "spent {v} from our joint account"),
            ("I just found out {he} {p} on a new hobby.", "Last month {he} {p} without telling me."),
            ("{he} {p}", "{he} secretly {p}"),
            "How much did {he} spend?",
            group="issue",
            core=True,
        ),
        Slot(
            "move",
            "word",
            pick(P.US_CITIES),
            ("wants to move to {v}", "wants us to move to {v}"),
            ("Now {he} {p} for a new job.", "Out of nowhere {he} {p} next year."),
            ("{he} {p}",),
            "Where does {he} want to move?",
            group="issue",
            bare=True,
            core=True,
        ),
        Slot(
            "gaming",
            "num",
            integer(4, 10),
            ("plays video games {v} hours a day", "games for {v} hours a day"),
            ("Lately {he} {p} and barely talks to me.", "Since {he} lost {his} job {he} {p}."),
            ("{he} {p}",),
            "How much does {he} play?",
            group="issue",
            core=True,
        ),
        Slot(
            "ex",
            "word",
            any_name,
            ("still talks to {his} ex {v}", "still hangs out with {his} ex {v}"),
            ("I recently learned that {he} {p} every week.", "It turns out {he} {p} behind my back."),
            ("{he} {p}",),
            "Who does {he} still talk to?",
            group="issue",
            bare=True,
            core=True,
        ),
        Slot(
            "home",
            "word",
            pick(P.US_CITIES),
            ("live together in {v}", "share an apartment in {v}"),
            ("We {p} and split everything.", "Right now we {p} with a cat."),
            ("we {p}",),
            "Where do you live?",
            bare=True,
        ),
    ),
    combos=(
        (("partner", "narrator", "duration"), "My {p_partner} and {p_narrator} have been {p_duration}."),
        (("partner", "narrator"), "My {p_partner} and {p_narrator} met through friends."),
    ),
    questions=(
        Question(("should I confront {him} about it", "should I confront {him}", "do I confront {him} about it")),
        Question(("should I break up with {him}", "should I end things with {him}", "is it time to break up")),
        Question(("am I overreacting", "am I overreacting here", "am I being unreasonable")),
        Question(("how do I bring this up with {him}", "how do I talk to {him} about this")),
        Question(("is this a red flag", "is this a dealbreaker")),
    ),
    distractors=(
        Distractor(
            "partner",
            "sister ({v})",
            ("My {p} thinks I should just let it go.", "My {p} says I'm overthinking it."),
            draw=lambda r, c: f"{r.randint(16, 45)}F",
        ),
        Distractor(
            "texting",
            "best friend {v}",
            ("My {p} says I'm overthinking it.", "I talked to my {p} and she agrees with me."),
            draw=female_name,
        ),
        Distractor("ex", "cousin {v}", ("My {p} went through the same thing last year.",)),
        Distractor(
            "duration", "last relationship lasted {v} years", ("My {p}, so I'm not new to this.",), draw=integer(2, 6)
        ),
        Distractor("home", "met at a concert in {v}", ("We {p} a while ago.",)),
        Distractor("move", "parents live in {v}", ("My {p} and want us closer.",)),
        Distractor("money", "parents lent us {v}", ("Last year my {p} for the car.",)),
        Distractor("gaming", "work {v} hours a day", ("I {p} so I'm tired too.",), draw=integer(6, 12)),
    ),
    fillers=(
        "I love {him} but this is really getting to me.",
        "I don't want to be the jealous type.",
        "Everything else in our relationship is great.",
        "I have tried to let it go but I can't.",
        "My friends are split on this.",
        "We have talked about it before and it went nowhere.",
        "{He} says I'm making a big deal out of nothing.",
        "I don't know what to think anymore.",
    ),
    topics=(
        "Need advice about my {rel}",
        "{Rel} problems",
        "Not sure how to handle this",
        "Trust issues with my {rel}",
        "Is this normal in a relationship",
    ),
    n_facts=(3, 5),
    vague=("my {rel}", "relationship stuff"),
)

# --------------------------------------------------------------------------------------------------- personal finance

PERSONAL_FINANCE = Subreddit(
    name="personalfinance",
    weight=0.10,
    make_ctx=lambda r: {"debt": r.choice(P.DEBTS)},
    slots=(
        Slot(
            "age",
            "num",
            integer(19, 45),
            ("{v} years old",),
            ("I'm {p} and just started my first real job.", "I am {p} and trying to get my finances together."),
            ("I'm {p}", "{p}"),
            "How old are you?",
        ),
        Slot(
            "income",
            "num",
            dollars(32000, 140000, 1000),
            ("make {v} a year", "earn {v} a year"),
            ("I {p} before taxes.", "Right now I {p} at my job.", "After a promotion I {p}."),
            ("I {p}", "{p}"),
            "How much do you make?",
            core=True,
        ),
        Slot(
            "debt",
            "num",
            dollars(1500, 60000, 500),
            ("{v} in {debt}", "{v} of {debt}"),
            ("I also have {p} that I want to get rid of.", "I still owe {p}.", "On top of that I have {p}."),
            ("have {p}", "{p}", "owe {p}"),
            "How much debt do you have?",
        ),
        Slot(
            "rent",
            "num",
            dollars(600, 2600, 50),
            ("{v} a month in rent", "{v} a month for rent"),
            ("I pay {p} for a small apartment.", "I pay {p} which is most of my budget."),
            ("pay {p}", "{p}"),
            "How much is your rent?",
        ),
        Slot(
            "savings",
            "num",
            dollars(1000, 45000, 500),
            ("{v} in savings", "{v} saved up"),
            ("I have {p} right now.", "So far I have {p} in a regular bank account."),
            ("have {p}", "{p}"),
            "How much have you saved?",
        ),
        Slot(
            "match",
            "num",
            integer(2, 8),
            ("employer matches {v}%", "company matches {v}%"),
            ("My {p} in the 401k.", "I know my {p} if I put money in."),
            ("{p}",),
            "What does your employer match?",
        ),
        Slot(
            "car",
            "num",
            dollars(6000, 40000, 500),
            ("a used car for {v}", "a car that costs {v}"),
            ("I'm thinking about buying {p}.", "I really want {p} because mine keeps breaking down."),
            ("want {p}", "thinking about {p}"),
            "What car do you want?",
        ),
    ),
    questions=(
        Question(
            ("should I pay off the debt first or save", "pay off debt or save", "should I pay off debt before saving"),
            needs=("debt",),
        ),
        Question(("should I buy the car", "is buying the car a bad idea"), needs=("car",)),
        Question(("am I on the right track", "am I doing okay")),
        Question(("should I invest or build savings first", "invest or build savings")),
        Question(("how much should I keep in savings", "how big should my emergency fund be")),
    ),
    distractors=(
        Distractor("rent", "roommate pays {v} a month", ("My {p} for a bigger room.",)),
        Distractor("income", "brother makes {v} a year", ("My {p} and still has no savings.",)),
        Distractor("savings", "parents gave me {v} for graduation", ("My {p} a few years ago.",)),
        Distractor("debt", "friend paid off {v} last year", ("My {p} and says it changed her life.",)),
        Distractor("car", "old car sold for {v}", ("My {p} so I have a little extra.",), draw=dollars(1000, 6000, 250)),
        Distractor("age", "started saving at {v}", ("My dad {p} and tells me I'm late.",), draw=integer(16, 30)),
    ),
    fillers=(
        "I never learned much about money growing up.",
        "I want to be smart about this.",
        "I use a budget app every month.",
        "I don't have any other big expenses.",
        "My parents can't really help me.",
        "I finally feel like I'm getting somewhere.",
    ),
    topics=("Budget help", "First real job, need money advice", "Money question", "Help me make a plan"),
    vague=("money stuff", "my finances"),
)

# --------------------------------------------------------------------------------------------------- legal advice


def _legal_ctx(r: random.Random) -> dict[str, str]:
    lg = r.choice("MF")
    return {"lg": lg, **pronouns(lg)}


LEGAL_ADVICE = Subreddit(
    name="legaladvice",
    weight=0.09,
    make_ctx=_legal_ctx,
    slots=(
        Slot(
            "state",
            "word",
            pick(P.STATES),
            ("live in {v}", "rent in {v}"),
            ("I {p} if that matters.", "For context, I {p}."),
            ("I {p}", "{p}"),
            "Where do you live?",
            bare=True,
        ),
        Slot(
            "deposit",
            "num",
            dollars(400, 3500, 50),
            ("{v} security deposit", "{v} deposit"),
            ("My landlord kept my whole {p}.", "The landlord never returned my {p}."),
            ("landlord kept my {p}", "landlord is keeping my {p}"),
            "How much was the deposit?",
            core=True,
        ),
        Slot(
            "days",
            "num",
            integer(21, 90),
            ("{v} days ago",),
            ("I moved out {p} and left the place spotless.", "I returned the keys {p}."),
            ("moved out {p}",),
            "When did you move out?",
        ),
        Slot(
            "cleaning",
            "num",
            dollars(150, 1500, 25),
            ("charged me {v} for cleaning", "billed me {v} for cleaning"),
            ("Now {he} says {he} {p}.", "On top of that {he} {p} and a new carpet."),
            ("{he} {p}",),
            "What did the landlord charge?",
        ),
        Slot(
            "lease",
            "num",
            integer(6, 24),
            ("{v} month lease",),
            ("I signed a {p} and finished it.", "We had a {p} that ended this summer."),
            ("finished a {p}", "had a {p}"),
            "How long was the lease?",
        ),
        Slot(
            "landlord",
            "word",
            name_of("lg"),
            ("landlord {v}",),
            ("My {p} has stopped answering my texts.", "I emailed my {p} twice and got nothing."),
            ("{p} won't answer",),
            "What is the landlord's name?",
            bare=True,
        ),
    ),
    questions=(
        Question(("can {he} do that", "is that legal", "is {he} allowed to do that")),
        Question(("should I take {him} to small claims", "is small claims worth it", "should I sue in small claims")),
        Question(("do I have a case", "do I have any options")),
        Question(("how do I get my deposit back", "how do I get the money back")),
    ),
    distractors=(
        Distractor("deposit", "previous tenant paid {v} up front", ("The {p} and got all of it back.",)),
        Distractor("days", "roommate left {v} days earlier", ("My {p} than me.",), draw=integer(3, 20)),
        Distractor("cleaning", "friend paid {v} for a cleaner", ("My {p} at her old place.",)),
        Distractor("landlord", "neighbor {v}", ("My {p} had the same problem with this building.",), draw=any_name),
        Distractor("state", "grew up in {v}", ("I {p} so I don't know the laws here.",)),
        Distractor("lease", "new lease is {v} months", ("My {p} so I can't just move back.",), draw=integer(6, 24)),
    ),
    fillers=(
        "I have photos of everything from move out day.",
        "I always paid rent on time.",
        "{He} has stopped answering my calls.",
        "I have never dealt with anything like this before.",
        "I don't have much money for a lawyer.",
        "The place was in great shape when I left.",
    ),
    topics=("Landlord won't return deposit", "Security deposit question", "Landlord problem", "Is this legal"),
    vague=("my landlord", "a deposit thing"),
)

# --------------------------------------------------------------------------------------------------- jobs


def _job(r: random.Random, c: dict[str, str]) -> str:
    j = r.choice(P.JOBS)
    return f"{a_or_an(j)} {j}"


def _jobs_ctx(r: random.Random) -> dict[str, str]:
    mg = r.choice("MF")
    return {"mg": mg, **pronouns(mg)}


JOBS = Subreddit(
    name="jobs",
    weight=0.09,
    make_ctx=_jobs_ctx,
    slots=(
        Slot(
            "role",
            "word",
            _job,
            ("work as {v}",),
            ("I currently {p} at a small company.", "Right now I {p} and I like the people."),
            ("I {p}", "{p}"),
            "What do you do?",
        ),
        Slot(
            "tenure",
            "num",
            integer(2, 12),
            ("been there {v} years", "been there for {v} years"),
            ("I have {p} and never had a bad review.", "I've {p} and I'm good at it."),
            ("{p}", "I've {p}"),
            "How long have you been there?",
        ),
        Slot(
            "salary",
            "num",
            dollars(30000, 110000, 1000),
            ("salary of {v}", "base salary of {v}"),
            ("I have a {p} right now.", "Currently I'm at a {p}."),
            ("current {p}", "at a {p}"),
            "What is your salary?",
        ),
        Slot(
            "offer",
            "num",
            dollars(35000, 130000, 1000),
            ("offer for {v}", "offer of {v}"),
            ("Yesterday I got an {p} from another company.", "I just received an {p} at a bigger place."),
            ("got an {p}", "new {p}"),
            "How much is the offer?",
            core=True,
        ),
        Slot(
            "company",
            "word",
            pick(P.COMPANIES),
            ("company called {v}", "startup called {v}"),
            ("The offer is from a {p} downtown.", "The new job would be at a {p}."),
            ("from a {p}",),
            "Who made the offer?",
            bare=True,
        ),
        Slot(
            "commute",
            "num",
            integer(10, 90, 5),
            ("{v} minute commute",),
            ("The new job would mean a {p} each way.", "Taking it means a {p} every day."),
            ("{p}", "a {p}"),
            "How long is the commute?",
        ),
        Slot(
            "manager",
            "word",
            name_of("mg"),
            ("manager {v}", "boss {v}"),
            ("My {p} said {he} might be able to match it.", "My {p} hinted that {he} might match it."),
            ("{p} might match it", "my {p} might match it"),
            "Who is your manager?",
            bare=True,
        ),
    ),
    questions=(
        Question(("should I take the offer", "should I take it", "do I take the offer")),
        Question(
            ("should I ask for a counter offer", "should I ask my boss to match it", "should I ask for a raise first")
        ),
        Question(("is it worth the switch", "is it worth leaving")),
        Question(("how do I tell my manager", "how do I tell my boss")),
    ),
    distractors=(
        Distractor("offer", "friend got {v} at a similar job", ("A {p} last year.",)),
        Distractor("manager", "coworker {v}", ("My {p} left last month and loves the new place.",), draw=any_name),
        Distractor("commute", "old job was {v} minutes away", ("My {p} and I hated it.",)),
        Distractor("salary", "sister makes {v} doing the same thing", ("My {p} in another city.",)),
        Distractor("company", "interviewed at {v} too", ("I {p} but never heard back.",)),
        Distractor(
            "tenure", "dad stayed {v} years at one place", ("My {p} and thinks I should stay.",), draw=integer(10, 30)
        ),
    ),
    fillers=(
        "I like my team a lot.",
        "The new role sounds more interesting.",
        "I'm nervous about starting over.",
        "Benefits are about the same at both places.",
        "I have never negotiated before.",
        "My family says I should go for it.",
    ),
    topics=("Job offer dilemma", "Should I leave my job", "Need career advice", "Got an offer, not sure what to do"),
    vague=("work stuff", "my job"),
)

# --------------------------------------------------------------------------------------------------- fitness

FITNESS = Subreddit(
    name="Fitness",
    weight=0.07,
    make_ctx=lambda r: {},
    slots=(
        Slot(
            "weight",
            "num",
            integer(120, 280),
            ("weigh {v} lbs", "weigh {v} pounds"),
            ("Right now I {p}.", "I currently {p} and want to change that."),
            ("I {p}", "{p}"),
            "How much do you weigh?",
            core=True,
        ),
        Slot(
            "goal",
            "num",
            integer(10, 60),
            ("lose {v} lbs", "lose {v} pounds"),
            ("My goal is to {p} by summer.", "I want to {p} this year."),
            ("want to {p}", "trying to {p}"),
            "What is your goal?",
        ),
        Slot(
            "days",
            "num",
            integer(2, 6),
            ("{v} days a week",),
            ("I go to the gym {p}.", "I lift {p} on a basic program."),
            ("lift {p}", "gym {p}"),
            "How often do you train?",
        ),
        Slot(
            "months",
            "num",
            integer(2, 18),
            ("been lifting for {v} months", "been training for {v} months"),
            ("I have {p} now.", "I've {p} with a friend."),
            ("{p}", "I've {p}"),
            "How long have you trained?",
        ),
        Slot(
            "calories",
            "num",
            integer(1400, 3200, 50),
            ("{v} calories a day",),
            ("I eat about {p}.", "I'm eating around {p} right now."),
            ("eating {p}", "eat {p}"),
            "How much do you eat?",
        ),
        Slot(
            "bench",
            "num",
            integer(95, 275, 5),
            ("bench {v} lbs", "bench press {v} lbs"),
            ("I can {p} for five reps.", "Right now I can {p} on a good day."),
            ("can {p}",),
            "What do you bench?",
        ),
        Slot(
            "age",
            "num",
            integer(18, 55),
            ("{v} years old",),
            ("I'm {p} and have a desk job.", "I am {p} and new to all this."),
            ("I'm {p}", "{p}"),
            "How old are you?",
        ),
    ),
    questions=(
        Question(("should I cut or bulk", "cut or bulk")),
        Question(("why am I not losing weight", "why is the scale not moving")),
        Question(("should I change my program", "do I need a new program")),
        Question(("is my diet the problem", "is it my diet")),
    ),
    distractors=(
        Distractor("weight", "brother weighs {v} lbs", ("My {p} and eats way more than me.",)),
        Distractor("goal", "friend lost {v} lbs last year", ("My {p} doing keto.",)),
        Distractor("days", "old program was {v} days", ("My {p} and I burned out.",)),
        Distractor("bench", "buddy can bench {v}", ("My {p} after a year.",)),
        Distractor("calories", "app says {v} calories", ("My {p} but that seems low.",)),
        Distractor("age", "trainer is {v}", ("My {p} and in amazing shape.",)),
    ),
    fillers=(
        "I track everything in an app.",
        "I sleep about seven hours most nights.",
        "I'm not sure what I'm doing wrong.",
        "I really want to stick with it this time.",
        "I walk my dog every evening.",
        "I have a desk job so I sit a lot.",
    ),
    topics=("Progress stalled", "Need help with my plan", "Not seeing results", "Beginner question"),
    vague=("my training", "the gym"),
)

# --------------------------------------------------------------------------------------------------- pets


def _pet_ctx(r: random.Random) -> dict[str, str]:
    animal = r.choice(("dog", "dog", "cat"))
    pg = r.choice("MF")
    return {"animal": animal, "sym": r.choice(P.PET_SYMPTOMS), **pronouns(pg)}


PETS = Subreddit(
    name="Pets",
    weight=0.07,
    make_ctx=_pet_ctx,
    slots=(
        Slot(
            "breed",
            "word",
            lambda r, c: r.choice(P.DOG_BREEDS if c["animal"] == "dog" else P.CAT_BREEDS),
            ("{v}",),
            ("My {animal} is a {p} and very gentle.", "I have a {p} that we adopted last year."),
            ("my {p}", "{p}"),
            "What breed is your {animal}?",
            bare=True,
        ),
        Slot(
            "name",
            "word",
            pick(P.PET_NAMES),
            ("named {v}", "called {v}"),
            ("Our {animal} is {p} and we love {him}.", "{He} is {p} and {he} is the sweetest."),
            ("{p}",),
            "What is your {animal}'s name?",
            bare=True,
        ),
        Slot(
            "age",
            "num",
            integer(2, 15),
            ("{v} years old",),
            ("{He} is {p} and has always been healthy.", "{He} is {p} and very active."),
            ("{p}", "{he} is {p}"),
            "How old is {he}?",
        ),
        Slot(
            "symptom",
            "num",
            integer(2, 9),
            ("{sym} for {v} days",),
            ("{He} has been {p} now.", "For some reason {he} has been {p}."),
            ("{p}", "has been {p}", "{he} has been {p}"),
            "How long has this been going on?",
            core=True,
        ),
        Slot(
            "vet",
            "num",
            dollars(150, 3000, 50),
            ("vet quoted {v}", "vet wants {v}"),
            ("The {p} for tests.", "The {p} just to run bloodwork."),
            ("{p}", "the {p}"),
            "What did the vet quote?",
        ),
        Slot(
            "food",
            "num",
            integer(2, 6),
            ("switched food {v} weeks ago", "changed food {v} weeks ago"),
            ("We {p} but nothing else changed.", "I {p} to a cheaper brand."),
            ("{p}", "we {p}"),
            "When did you change food?",
        ),
    ),
    combos=(
        (("breed", "name"), "I have a {p_breed} {p_name}."),
        (("breed", "name"), "My {animal} is a {p_breed} {p_name}."),
    ),
    questions=(
        Question(("should I take {him} to the vet", "does {he} need the vet", "should I go to the vet")),
        Question(("is this normal", "is this normal for a {animal}")),
        Question(("is the vet bill worth it", "should I pay for the tests"), needs=("vet",)),
        Question(("what could cause this", "what is causing this")),
    ),
    distractors=(
        Distractor("name", "other {animal} {v}", ("My {p} never had this problem.",)),
        Distractor("age", "neighbor's dog is {v}", ("My {p} and had the same thing.",)),
        Distractor("vet", "checkup cost {v}", ("Last year a {p} so this is a lot.",)),
        Distractor("symptom", "sick for {v} days once", ("{He} was {p} as a puppy too.",)),
        Distractor("food", "new treats {v} days ago", ("We also bought {p}.",)),
    ),
    fillers=(
        "{He} is still drinking water.",
        "{He} seems happy otherwise.",
        "I'm really worried about {him}.",
        "We have had {him} since {he} was little.",
        "{He} is my whole world.",
        "Money is a little tight this month.",
    ),
    topics=("Worried about my {animal}", "Is this normal?", "Sick {animal}, need advice", "Vet question"),
    vague=("my {animal}", "my pet"),
)

# --------------------------------------------------------------------------------------------------- travel

TRAVEL = Subreddit(
    name="travel",
    weight=0.06,
    make_ctx=lambda r: {},
    slots=(
        Slot(
            "destination",
            "word",
            pick(P.WORLD_CITIES),
            ("trip to {v}", "first trip to {v}"),
            ("We are planning a {p} this year.", "I'm finally taking a {p} with my partner."),
            ("planning a {p}", "{p}"),
            "Where are you going?",
            bare=True,
            core=True,
        ),
        Slot(
            "days",
            "num",
            integer(3, 16),
            ("for {v} days",),
            ("We will be there {p}.", "We can only stay {p} because of work."),
            ("{p}", "staying {p}"),
            "How long is the trip?",
        ),
        Slot(
            "budget",
            "num",
            dollars(800, 9000, 100),
            ("budget of {v}", "total budget of {v}"),
            ("We have a {p} for everything.", "We set a {p} including flights."),
            ("{p}", "with a {p}"),
            "What is the budget?",
        ),
        Slot(
            "month",
            "word",
            pick(P.MONTHS),
            ("going in {v}", "leaving in {v}"),
            ("We are {p} when prices are lower.", "We're {p} if everything works out."),
            ("{p}",),
            "When are you going?",
        ),
        Slot(
            "group",
            "num",
            integer(2, 8),
            ("group of {v}",),
            ("It will be a {p} from college.", "We are a {p} and most of us are on a budget."),
            ("{p}", "a {p}"),
            "How many are going?",
        ),
        Slot(
            "hotel",
            "num",
            dollars(60, 400, 5),
            ("{v} a night",),
            ("The hotel we like is {p}.", "Most places we found are around {p}."),
            ("hotel is {p}", "{p}"),
            "How much is the hotel?",
        ),
    ),
    questions=(
        Question(("is that enough time", "is that enough days", "is it enough time"), needs=("days",)),
        Question(("where should we stay", "which area should we stay in")),
        Question(("is our budget realistic", "is that budget enough"), needs=("budget",)),
        Question(("what should we not miss", "what are the must sees")),
    ),
    distractors=(
        Distractor("destination", "went to {v} last year", ("We {p} and loved it.",)),
        Distractor("budget", "cousin spent {v}", ("My {p} on a similar trip.",)),
        Distractor("days", "friends stayed {v} days", ("Our {p} and said it was too short.",)),
        Distractor("hotel", "hostel was {v}", ("One {p} but it looked rough.",), draw=dollars(20, 60, 5)),
        Distractor("month", "flights are cheaper in {v}", ("I read that {p}.",)),
    ),
    fillers=(
        "None of us have been there before.",
        "We like food and walking around.",
        "We don't want to rush.",
        "I've read a lot of guides but they all say different things.",
        "We are not really into nightlife.",
        "I want to plan this right.",
    ),
    topics=("Trip planning help", "First time abroad", "Itinerary advice", "Help with our trip"),
    vague=("our trip", "travel plans"),
)

# --------------------------------------------------------------------------------------------------- tech support


def _device(r: random.Random, c: dict[str, str]) -> str:
    return f"{r.choice(P.TECH_BRANDS)} {r.choice(P.DEVICES)}"


TECH_SUPPORT = Subreddit(
    name="techsupport",
    weight=0.07,
    make_ctx=lambda r: {"tsym": r.choice(P.TECH_SYMPTOMS)},
    slots=(
        Slot(
            "device",
            "word",
            _device,
            ("{v}",),
            ("My {p} is acting up.", "I have a {p} that I use for work."),
            ("my {p}", "{p}"),
            "What device is it?",
            bare=True,
            core=True,
        ),
        Slot(
            "age",
            "num",
            integer(2, 9),
            ("{v} years old", "about {v} years old"),
            ("It is {p}.", "The thing is {p} and never had issues."),
            ("{p}", "it's {p}"),
            "How old is it?",
        ),
        Slot(
            "symptom",
            "num",
            integer(5, 60, 5),
            ("{tsym} after {v} minutes",),
            ("It {p} of use.", "Lately it {p} even when idle."),
            ("it {p}", "{p}"),
            "When does it happen?",
            core=True,
        ),
        Slot(
            "os",
            "num",
            pick(("7", "8", "10", "11")),
            ("running Windows {v}", "on Windows {v}"),
            ("It is {p}.", "The machine is {p} with all updates."),
            ("{p}",),
            "What system does it run?",
        ),
        Slot(
            "error",
            "num",
            integer(10, 999),
            ("error code {v}",),
            ("Sometimes I get {p} on startup.", "Event viewer shows {p} every time."),
            ("{p}", "getting {p}"),
            "What error do you get?",
        ),
        Slot(
            "part",
            "word",
            pick(P.PARTS),
            ("already replaced the {v}", "already swapped the {v}"),
            ("I {p} but nothing changed.", "I {p} last month."),
            ("{p}", "I {p}"),
            "What have you tried?",
        ),
    ),
    questions=(
        Question(("is it worth fixing", "should I just replace it", "is it worth repairing")),
        Question(("what should I try next", "what else can I try")),
        Question(("is it a hardware problem", "is this hardware or software")),
        Question(("could it be overheating", "is it overheating")),
    ),
    distractors=(
        Distractor(
            "device",
            "old {v}",
            ("My {p} had a similar issue years ago.",),
            draw=lambda r, c: f"{r.choice(P.TECH_BRANDS)} laptop",
        ),
        Distractor("error", "brother's PC shows code {v}", ("My {p} sometimes.",)),
        Distractor("symptom", "charger gets hot after {v} minutes", ("The {p} too.",)),
        Distractor("age", "monitor is {v} years newer", ("My {p} and works fine.",), draw=integer(2, 5)),
        Distractor("part", "friend replaced the {v}", ("My {p} on his and it helped.",)),
    ),
    fillers=(
        "I have updated all the drivers.",
        "I am not very good with computers.",
        "It used to work fine.",
        "I really need it for school.",
        "I already ran a virus scan.",
        "Nothing is under warranty anymore.",
    ),
    topics=("Computer problem", "Help, it keeps happening", "Need tech help", "Weird issue, no idea what to do"),
    vague=("my computer", "a tech problem"),
)

# --------------------------------------------------------------------------------------------------- college


def _gpa(r: random.Random, c: dict[str, str]) -> str:
    return f"{r.randint(20, 39) / 10:.1f}"


COLLEGE = Subreddit(
    name="college",
    weight=0.06,
    make_ctx=lambda r: {},
    slots=(
        Slot(
            "major",
            "word",
            pick(P.MAJORS),
            ("{v} major",),
            ("I'm a {p} at a state school.", "I'm a second year {p}."),
            ("{p}",),
            "What is your major?",
            core=True,
        ),
        Slot(
            "gpa",
            "num",
            _gpa,
            ("{v} GPA",),
            ("I have a {p} right now.", "I'm sitting at a {p} after this semester."),
            ("{p}", "have a {p}"),
            "What is your GPA?",
        ),
        Slot(
            "tuition",
            "num",
            dollars(4000, 45000, 500),
            ("{v} a year in tuition",),
            ("I pay {p} with loans.", "It costs me {p}."),
            ("paying {p}",),
            "How much is tuition?",
        ),
        Slot(
            "hours",
            "num",
            integer(8, 35),
            ("work {v} hours a week",),
            ("I also {p} at a restaurant.", "On top of classes I {p}."),
            ("{p}", "I {p}"),
            "How much do you work?",
        ),
        Slot(
            "credits",
            "num",
            integer(12, 19),
            ("{v} credits",),
            ("This semester I'm taking {p}.", "I signed up for {p} this term."),
            ("taking {p}",),
            "How many credits?",
        ),
        Slot(
            "switch",
            "word",
            pick(P.MAJORS),
            ("switch to {v}", "change to {v}"),
            ("I have been thinking about trying to {p}.", "Part of me wants to {p}."),
            ("want to {p}", "thinking about trying to {p}"),
            "What do you want to study?",
        ),
    ),
    questions=(
        Question(("should I switch majors", "should I change majors", "do I switch majors")),
        Question(("should I drop a class", "should I drop one class")),
        Question(("is it too late to change", "is it too late")),
        Question(("can I handle work and school", "how do I balance work and school")),
    ),
    distractors=(
        Distractor("major", "roommate studies {v}", ("My {p} and loves it.",)),
        Distractor("gpa", "sister finished with a {v} average", ("My {p} in the same program.",)),
        Distractor("tuition", "community college costs {v} a year", ("The local {p} by comparison.",)),
        Distractor("hours", "roommate works {v} hours", ("My {p} and still gets good grades.",)),
        Distractor("credits", "friend took a {v} credit load", ("My {p} and almost failed.",)),
    ),
    fillers=(
        "My parents think I should stay.",
        "I've talked to my advisor once.",
        "I'm tired all the time.",
        "I do like some of my classes.",
        "I don't want to waste money.",
        "Everyone else seems to have it figured out.",
    ),
    topics=("Thinking about switching majors", "Struggling this semester", "College advice", "Need some perspective"),
    vague=("school", "college stuff"),
)

# --------------------------------------------------------------------------------------------------- cars


def _car(r: random.Random, c: dict[str, str]) -> str:
    return f"{r.randint(2004, 2020)} {r.choice(P.CARS)}"


def _miles(r: random.Random, c: dict[str, str]) -> str:
    return f"{r.randrange(60000, 240001, 1000):,}"


CARS = Subreddit(
    name="MechanicAdvice",
    weight=0.06,
    make_ctx=lambda r: {},
    slots=(
        Slot(
            "car",
            "word",
            _car,
            ("{v}",),
            ("I drive a {p} that I bought used.", "My car is a {p}."),
            ("my {p}", "{p}"),
            "What car is it?",
            bare=True,
            core=True,
        ),
        Slot(
            "miles",
            "num",
            _miles,
            ("{v} miles",),
            ("It has {p} on it.", "The odometer says {p}."),
            ("{p}", "with {p}"),
            "How many miles?",
        ),
        Slot(
            "quote",
            "num",
            dollars(300, 4500, 50),
            ("shop quoted {v}", "mechanic quoted {v}"),
            ("The {p} to fix it.", "The {p} for parts and labor."),
            ("{p}", "the {p}"),
            "What was the quote?",
            core=True,
        ),
        Slot(
            "symptom",
            "word",
            pick(P.CAR_SYMPTOMS),
            ("{v}",),
            ("Lately there is a {p}.", "It started making a {p} last week."),
            ("{p}", "has a {p}"),
            "What is wrong with it?",
        ),
        Slot(
            "value",
            "num",
            dollars(1500, 15000, 250),
            ("worth about {v}", "worth maybe {v}"),
            ("I think the car is {p} at most.", "Online it says it's {p}."),
            ("car is {p}", "it's {p}"),
            "What is the car worth?",
        ),
    ),
    questions=(
        Question(("is it worth fixing", "should I fix it or sell it", "is it worth the repair")),
        Question(("is the quote fair", "is that a fair price", "is that quote fair"), needs=("quote",)),
        Question(("is it safe to drive", "can I still drive it")),
        Question(("should I get a second opinion", "do I need a second opinion")),
    ),
    distractors=(
        Distractor("car", "friend has a {v}", ("My {p} with no problems.",)),
        Distractor("quote", "neighbor paid {v} for brakes", ("My {p} last year.",)),
        Distractor("miles", "last car died at {v}", ("My {p} so I'm nervous.",)),
        Distractor("value", "dealer offered {v} for a trade in", ("A {p} yesterday.",)),
    ),
    fillers=(
        "I am not a car person.",
        "I need it to get to work.",
        "Money is tight right now.",
        "I do all the oil changes on time.",
        "I don't want a car payment.",
        "It has been a reliable car until now.",
    ),
    topics=("Repair or replace?", "Mechanic quote question", "Car trouble", "Weird noise, need advice"),
    vague=("my car", "car trouble"),
)

# --------------------------------------------------------------------------------------------------- parenting


def _kid_ctx(r: random.Random) -> dict[str, str]:
    kg = r.choice("MF")
    kid, kid2 = ("son", "daughter") if kg == "M" else ("daughter", "son")
    return {"kid": kid, "kid2": kid2, "issue": r.choice(P.KID_ISSUES), **pronouns(kg)}


PARENTING = Subreddit(
    name="Parenting",
    weight=0.05,
    make_ctx=_kid_ctx,
    slots=(
        Slot(
            "child",
            "num",
            integer(3, 15),
            ("{kid} ({v})", "{v} year old {kid}"),
            ("My {p} has been struggling lately.", "Our {p} is usually an easy kid."),
            ("my {p}", "{p}"),
            "How old is your {kid}?",
            core=True,
        ),
        Slot(
            "grade",
            "num",
            integer(1, 9),
            ("in grade {v}",),
            ("{He} is {p} at a public school.", "{He} is {p} this year."),
            ("{p}", "{he} is {p}"),
            "What grade is {he} in?",
        ),
        Slot(
            "sleep",
            "num",
            integer(9, 12),
            ("{issue} {v} pm",),
            ("Lately {he} {p} on school nights.", "Every night {he} {p} no matter what."),
            ("{he} {p}",),
            "When does {he} sleep?",
        ),
        Slot(
            "screen",
            "num",
            integer(2, 9),
            ("{v} hours of screen time",),
            ("{He} gets about {p} a day.", "Right now {he} has {p} every day."),
            ("{p}", "{he} gets {p}"),
            "How much screen time?",
        ),
        Slot(
            "teacher",
            "word",
            any_name,
            ("teacher {v}",),
            ("{His} {p} emailed me about it.", "I spoke with {his} {p} last week."),
            ("{his} {p}",),
            "Who is the teacher?",
            bare=True,
        ),
    ),
    questions=(
        Question(("how do I get {him} to sleep earlier", "how do I fix {his} bedtime"), needs=("sleep",)),
        Question(("should I cut screen time", "should I take away the tablet")),
        Question(("is this normal at this age", "is this normal")),
        Question(("should I talk to the teacher", "do I talk to the teacher")),
    ),
    distractors=(
        Distractor("child", "older {kid2} ({v})", ("My {p} was never like this.",), draw=integer(5, 19)),
        Distractor("teacher", "friend {v}", ("My {p} says her kids are the same.",), draw=female_name),
        Distractor("screen", "partner thinks {v} hours is fine", ("My {p} but I don't.",)),
        Distractor("sleep", "used to sleep by {v}", ("{He} {p} pm last year.",), draw=integer(7, 8)),
    ),
    fillers=(
        "We have tried a sticker chart.",
        "I don't want to be too strict.",
        "Bedtime has become a fight every night.",
        "{He} is a sweet kid most of the time.",
        "My partner and I don't agree on this.",
        "I feel like I'm failing here.",
    ),
    topics=("Struggling with my {kid}", "Parenting advice needed", "Is this normal?", "Bedtime battles"),
    vague=("my {kid}", "parenting stuff"),
)

SUBREDDITS: tuple[Subreddit, ...] = (
    RELATIONSHIPS,
    PERSONAL_FINANCE,
    LEGAL_ADVICE,
    JOBS,
    FITNESS,
    PETS,
    TRAVEL,
    TECH_SUPPORT,
    COLLEGE,
    CARS,
    PARENTING,
)
