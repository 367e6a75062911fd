"""Pre-retrieval safety screen: crisis and personal medical questions get fixed text, never an answer.

Two halves: hand-written rules (English and Spanish), the floor for wordings that must never
be missed, and a learned detector (rag/answer/crisis.py) for every other wording. Either one saying
"crisis" gives the fixed crisis text, in the message's language, before retrieval. The
detector alone can also say "concern" (distress, no stated danger): the member gets the
normal answer with a short resources line under it.

The documents themselves talk about suicide, overdoses, patients and medication, so every rule is
a phrase that needs a first-person speaker ("i", "myself") or someone the speaker knows ("my
brother", "he"); a bare keyword would flag questions about the articles.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ..types import SENSITIVE, Kind
from .crisis import CrisisDetector, language

CRISIS_MESSAGE = (
    "I'm really sorry you're going through this. I'm only a bot that answers questions about "
    "the union's strike documents, so I can't help with this, but people can, right now:\n\n"
    "- **Call or text 988** (Suicide & Crisis Lifeline), or chat at **988lifeline.org**\n"
    "- **Text HOME to 741741** (Crisis Text Line)\n"
    "- **Call 911** if you or someone else is in immediate danger\n\n"
    "You don't have to go through this alone."
)

# 988 answers in Spanish when you press 2, and takes texts in Spanish sent as AYUDA.
CRISIS_MESSAGE_ES = (
    "Siento mucho que estés pasando por esto. Solo soy un bot que responde preguntas sobre "
    "los documentos de la huelga del sindicato, así que no puedo ayudarte con esto, pero hay "
    "personas que sí pueden, ahora mismo:\n\n"
    "- **Llama al 988** y marca **2** para hablar en español (Línea 988 de Prevención del "
    "Suicidio y Crisis), o chatea en **988lifeline.org/es**\n"
    "- **Envía AYUDA por mensaje de texto al 988**\n"
    "- **Llama al 911** si tú u otra persona están en peligro inmediato\n\n"
    "No tienes que pasar por esto a solas."
)
# Shown under a normal answer when a message sounds distressed but names no danger.
CONCERN_NOTICE = ("If things feel heavy right now, you don't have to wait for an appointment: "
                  "**call or text 988** any time, day or night, or **text HOME to 741741**.")
CONCERN_NOTICE_ES = ("Si te sientes abrumado, no tienes que esperar una cita: **llama al 988 y marca 2** "
                     "para hablar en español, o **envía AYUDA al 988**, a cualquier hora.")
CRISIS_MESSAGES = {"en": CRISIS_MESSAGE, "es": CRISIS_MESSAGE_ES}
CONCERN_NOTICES = {"en": CONCERN_NOTICE, "es": CONCERN_NOTICE_ES}
# What may be stored (an unanswered question, a rated exchange) is decided apart from what is
# answered, and more widely: a missed crisis message must not be kept either. Not stored:
# a sensitive verdict; distress the detector hears at half its concern threshold or more
# (STORE_DISTRESS_SHARE); any word of death, dying, being alive or gone, harm or goodbye.
# Withholding an ordinary question costs one line in the staff's list; keeping a crisis
# message costs a member's privacy.
STORE_DISTRESS_SHARE = 0.5
_NOT_STORED_WORDS = re.compile(
    r"\b(alive|live|living|die|dies|died|dying|dead|death|deaths|suicid\w*|kill\w*|overdos\w*|pills?|"
    r"harm\w*|hurt\w*|hopeless\w*|goodbye\w*|bye|farewell|funeral|grave|bridge|rope|gun|"
    r"(not|never) (be )?(here|around)|better off|disappear\w*|vanish\w*|end (it|things|my life)|"
    r"morir\w*|muer\w*|muri\w*|vivir|vivo|viva|despedi\w*|adi[oó]s|desaparec\w*|matar\w*)\b", re.I)
SCAN_CHARS = 6000  # how much of a message the detector reads; bounds its work on a huge paste
RULE_SCAN_CHARS = 100_000  # the rules are cheap (linear regexes): they read much further

MEDICAL_MESSAGE = (
    "I can't give medical or mental health advice. I'm a bot that only answers questions "
    "about the union's strike documents.\n\n"
    "Please talk with your own clinician, doctor or pharmacist about this. "
    "If it's an emergency, call **911**. If you're in crisis, call or text **988**."
)

# ---------------------------------------------------------------- building blocks
# Words allowed between "i" and the verb ("i have been really ..."); a closed list, so
# "i read that patients attempted suicide" does not count as speaking about oneself.
_FILL = (r"(?:(?:am|was|have|had|will|would|could|should|might|just|really|seriously|honestly|"
         r"literally|actually|already|still|even|almost|so|very|pretty|kind of|going to|want to|"
         r"wanted to|need to|plan to|planning to|trying to|tried to|about to|ready to|been|keep|"
         r"feel|felt|feel like|feeling|get|getting|having|thinking about|thinking of|considering) )*")
_SELF = rf"(?:^|[,;:.!?] |\bi ){_FILL}"  # clause start or "i ...": the speaker's own state
_REL = (r"(?:best friend|friend|brother|sister|mom|mother|mum|dad|father|son|daughter|kid|child|"
        r"husband|wife|partner|boyfriend|girlfriend|bf|gf|roommate|cousin|aunt|uncle|grandma|"
        r"grandpa|niece|nephew|fiance|coworker|classmate|neighbor|teen|family member|loved one|ex)s?")
_OTHER = rf"\b(?:he|she|hes|shes|someone|somebody|my {_REL}|a friend of mine|someone i know)\b"
_SUICIDE = r"suicide\b(?! (?:attempts?|rates?|prevention|risks?|statistics|data|numbers|crisis))"
_LIFE = r"(?:life|lives|own life|own lives)"
_PILLS = r"(?:\w+ )?(?:pills|tablets|meds|painkillers)\b"
_QTY = r"(?:a bunch of|a lot of|too many|a handful of|a whole bottle of|a bottle of|\d{2,})"
_ACCIDENT = r"(?: (?:on(?! purpose)|at|while|shaving|cooking|playing|lifting|by accident|accidentally))"
_MED = (r"(?:medications?|meds|medicine|pills?|prescriptions?|doses?|dosage|antidepressants?|"
        r"ssris?|benzos?|sertraline|zoloft|prozac|fluoxetine|lexapro|escitalopram|celexa|paxil|"
        r"wellbutrin|bupropion|effexor|cymbalta|trazodone|xanax|klonopin|ativan|valium|lithium|"
        r"lamictal|seroquel|abilify|adderall|ritalin|vyvanse|buspirone|gabapentin|hydroxyzine)")
_COND = (r"(?:anxiety|depression|ptsd|panic attacks?|adhd|ocd|bipolar|insomnia|trauma|grief|"
         r"eating disorder|addiction|drinking|mental health|symptoms|intrusive thoughts)")
_DIAGNOSES = r"(?:depression|anxiety|adhd|add|bipolar|ptsd|ocd|autism|bpd|borderline|schizophrenia)"

# ---------------------------------------------------------------- the rules
CRISIS_PATTERNS = [
    # Suicide, in the speaker's own words.
    r"\b(?:kill|killing|killed|shoot|shot|hang|hanging|drown|poison|stab|starve|unalive)\w* myself\b",
    r"\b(?:end|ending|ended|take|taking|took) my (?:own )?life\b",
    r"\bunalive\w*", r"(?<!\d)(?<!\d )\bkms\b",
    rf"{_SELF}suicidal\b(?! (?:patients?|people|clients?|members?|teens|youth))",
    r"\bmy suicidal\b",
    rf"{_SELF}(?:thinking|thought|thoughts) (?:about|of) (?:{_SUICIDE}|dying|not being (?:here|alive))",
    rf"{_SELF}(?:commit|committing|attempt|attempted|attempting|considering|contemplating|planning) "
    rf"(?:to commit )?{_SUICIDE}",
    rf"\bi {_FILL}(?:end|ending) (?:it|things|everything)\b(?! (?:with|between))",
    r"\b(?:end|ending|ends) it all\b",
    r"\b(?:want|wants|wanted|wanting|wish|ready|deserve|deserves|plan) to (?:die|be dead)\b",
    r"\bwish i (?:was|were|had) (?:dead|died|never been born|never born|not alive|gone)\b",
    r"\bwish i (?:could|would) (?:just )?die\b", r"\bnever wake up\b", r"\bbetter off without me\b",
    r"\b(?:better off|rather be) dead\b", r"\b(?:life|living) is not worth (?:living|it)\b",
    rf"\bi {_FILL}(?:disappear|sleep) forever\b",
    r"\bi (?:am|do) not (?:feel )?safe(?: (?:right now|tonight|anymore|with myself|at home))?\s*(?:$|[.!,?])",
    r"\bdo not (?:\w+ )?(?:want|wish|deserve) to (?:be alive|exist|wake up|be here anymore|"
    r"live(?! (?:in|with|near|on|at|like|under|up|through|here)\b))",
    r"\b(?:no|any|what is the) (?:reason|point|purpose) (?:to|in|of|for) (?:live|living|life|being alive|"
    r"staying alive|keep going|going on|go on)\b(?! (?:strike|a strike|the strike|with|the picket))",
    r"\b(?:do not|can not|no longer) see (?:the|any) (?:point|reason) (?:in|of|to|for) (?:\w+ ){0,2}"
    r"(?:living|live|life|being alive|staying alive|going on|waking up)\b(?! (?:strike|with|the picket))",
    r"\b(?:nothing|no one|nobody) to live for\b", r"\b(?:no|lost the|lost my) will to live\b",
    r"\b(?:tired|sick) of (?:living|being alive)\b",
    r"\b(?:no one|nobody) (?:would|will) (?:even )?(?:miss me|care if i (?:died|was gone|was dead))",
    r"\bi am (?:just |such |only )?a burden\b",
    r"\bcan not (?:\w+ )?(?:go on|keep going|keep living|take (?:it|this) anymore|do this anymore|"
    r"live like this)\b(?! (?:strike|a strike|with|to|at))",
    r"\bi am (?:\w+ )?in (?:a )?crisis\b", r"\b(?:suicide|crisis) (?:hot ?line|line|text line)\b",
    r"\bjump(?:ing)? (?:off|from|in front of) (?:a|the|this|my) (?:\w+ )?"
    r"(?:bridge|building|roof|cliff|balcony|train|overpass)\b",
    # Self-harm: intent always counts; a bare "hurt myself" may be an accident at work.
    r"\b(?:want to|going to|about to|need to|urges? to|thinking about|feel like|tempted to|keep) "
    r"(?:hurt|harm|cut|burn|injure|punish)\w* myself\b",
    rf"\b(?:hurt|harm|cut|burn|injur|punish)\w* myself\b(?!{_ACCIDENT})",
    rf"\b(?:i {_FILL}|urges? to |been |started |relapsed |stop )self (?:harm|injur)\w*",
    r"\b(?:cut|cutting|slit|slitting) (?:my|his|her|their) (?:wrists?|arms?|thighs?|legs?|skin)\b",
    r"\bi (?:\w+ )?cut again\b",
    # Pills and overdoses, by anyone.
    rf"\b(?:took|taken|swallowed|swallowing|downed|ate|take|taking|swallow) {_QTY} (?:of )?{_PILLS}",
    rf"\b(?:took|swallowed|downed|ate) all (?:of )?(?:my|his|her|their|the) {_PILLS}",
    rf"\bi {_FILL}(?:overdose|overdosed|overdosing|od)\b",
    # Someone the speaker knows is in danger.
    rf"\bmy {_REL}\b[^.?!]{{0,50}}?\b(?:suicidal|{_SUICIDE}|(?:want|wants|wanted) to die|"
    r"overdos(?:e|ed|ing)\b(?! (?:deaths?|rates?|crisis))|self harm|in danger)",
    rf"{_OTHER}[^.?!]{{0,40}}?\b(?:kill|hurt|harm|cut|shoot|hang|end|take|starve|stab|poison)\w* "
    rf"(?:himself|herself|themselves|themself|(?:his|her|their) {_LIFE})\b",
    r"\b(?:not|stopped|barely|can not) breath(?:e|ing)\b", r"\b(?:is|went|was found) unresponsive\b",
    # Violence, threatened or happening.
    r"\bi (?:am |really |just |seriously )*(?:going to|want to|about to|plan to|ready to|will) (?:\w+ )?"
    rf"(?:kill|murder|shoot|stab|strangle|attack|hurt) (?:him|her|them|someone|somebody|everyone|"
    rf"people|you|my {_REL}|my (?:boss|manager|supervisor|landlord))\b(?! feelings)",
    rf"{_OTHER}[^.?!]{{0,30}}?\b(?:threaten\w*|going|wants|about|trying) to (?:kill|murder|shoot|"
    r"stab|strangle|attack|hurt|beat) (?:me|us|him|her|them|my \w+|someone|somebody|everyone|people)\b",
    rf"{_OTHER}[^.?!]{{0,20}}?\b(?:has|got|is holding|pulled) (?:a|his|her) (?:gun|knife|weapon)\b",
    rf"\b(?:i am|we are|he is|she is|someone is|my {_REL} is) (?:\w+ )?in (?:immediate |serious |real )?danger\b",
    r"\b(?:hitting|beating|choking|strangling) (?:me|us)\b",
]

# Spanish, matched on the folded text (lower case, no accents): first person or someone close.
_ES_REL = (r"(?:hermano|hermana|hijo|hija|esposo|esposa|marido|mujer|pareja|novio|novia|amigo|amiga|"
           r"mama|madre|papa|padre|primo|prima|companero|companera|vecino|vecina)")
CRISIS_PATTERNS_ES = [
    r"\b(?:me )?(?:quiero|voy a|pienso|estoy pensando en|tengo ganas de|quisiera) "
    r"(?:morir|morirme|matarme|suicidarme|ahorcarme|cortarme|quitarme la vida|acabar con mi vida|"
    r"desaparecer para siempre|hacerme dano)\b",
    r"\bme (?:quiero|voy a|pienso) (?:morir|matar|suicidar|ahorcar|cortar|tirar)\b",
    r"\b(?:ya )?no (?:quiero|aguanto|puedo) (?:seguir )?(?:vivir|viviendo|estar vivo|estar viva|mas con mi vida)\b",
    r"\bno (?:le )?(?:veo|tiene) (?:sentido|razon) (?:a |de |para )?(?:seguir )?(?:vivir|viviendo|la vida)\b",
    r"\b(?:pensamientos|ideas) suicidas\b", r"\bme siento suicida\b", r"\bsoy suicida\b",
    r"\b(?:estoy )?cansad[oa] de vivir\b", r"\bojala (?:no despertar|estuviera muert[oa]|me muriera)\b",
    r"\b(?:todos|todo el mundo) (?:estarian|estaria) mejor sin mi\b", r"\bacabar con todo\b",
    r"\bme tome (?:todas|todas mis|muchas|un frasco|una caja)\b.{0,30}\b(?:pastillas|pildoras|medicinas)\b",
    rf"\bmi {_ES_REL} (?:\w+ ){{0,3}}(?:se (?:va a|quiere) (?:matar|suicidar|ahorcar)|"
    r"quiere (?:morir|matarse|suicidarse|quitarse la vida)|se tomo (?:todas|muchas))",
    r"\bcarta de despedida\b",
    r"\b(?:voy a|pienso|quiero|estoy por|me voy a) (?:tomarme|tomar) (?:todas|todas mis|todas las|el frasco|"
    r"un frasco|una caja)\b",
]

MEDICAL_PATTERNS = [
    # Starting, stopping or changing medication.
    r"\b(?:should|can|could|do|would|must) i\b(?: \w+){0,4}? (?:stop|start|quit|skip|change|switch|"
    r"increase|decrease|lower|raise|double|reduce|taper|wean|mix|combine|drink|come off|get off|"
    rf"go off|take|restart)\b[^.?!]{{0,30}}\b{_MED}\b",
    rf"\bis it (?:safe|ok|okay|dangerous|bad|normal|fine) (?:for me )?to\b[^.?!]{{0,40}}\b{_MED}\b",
    rf"\b(?:what|which|how much|how many) (?:\w+ ){{0,3}}?(?:dose|dosage|mg|milligrams?|{_MED})\b"
    r"[^.?!]{0,30}\b(?:should|can|do|must) i\b",
    rf"\bmy {_MED} (?:is|are|makes?|made|gives?|gave|keeps?|stopped|is not|are not)\b",
    rf"\bside effects? (?:of|from) (?:my|taking|{_MED})\b",
    # Treating or diagnosing the speaker.
    r"\bhow (?:do|can|should|could) i (?:\w+ )?(?:treat|cure|fix|manage|handle|deal with|cope with|"
    rf"get rid of|get over|overcome|stop|beat|heal|control) (?:my )?{_COND}\b",
    rf"\bwhat (?:should|can) i (?:do|take) (?:about|for) (?:my )?{_COND}\b",
    r"\b(?:should|do) i (?:\w+ )?(?:need to |have to )?(?:see|get|go to|start|try|need|find) "
    r"(?:a |an |some |more )?(?:therapist|therapy|psychiatrist|psychologist|counsell?(?:or|ing)|"
    r"treatment|meds|medication|antidepressants)\b(?: for (?:my|me|this)\b|\s*[?.!]*$)",
    r"\byou (?:\w+ )?(?:be|act as|pretend to be|become) my (?:therapist|counsell?or|psychiatrist|"
    r"psychologist|doctor|clinician)\b",
    r"\b(?:give|offer) me (?:some )?(?:therapy|counsell?ing|a diagnosis|medical advice|mental health advice)\b",
    r"\bdiagnose (?:me|my)\b",
    rf"\b(?:do|could|might|can) i have (?:\w+ )?{_DIAGNOSES}\b",
    r"\bam i (?:\w+ )?(?:depressed|bipolar|autistic|schizophrenic|psychotic|manic|an addict|"
    r"an alcoholic|having a panic attack)\b",
]

# Spellings folded into one form before matching, so the rules above stay short.
_WORDS = {"im": "i am", "ive": "i have", "dont": "do not", "doesnt": "does not", "didnt": "did not",
          "cant": "can not", "cannot": "can not", "wont": "will not", "isnt": "is not",
          "wanna": "want to", "wana": "want to", "gonna": "going to", "gotta": "got to",
          "kinda": "kind of", "tryna": "trying to", "whats": "what is", "u": "you", "ur": "your",
          "noone": "no one", "rn": "right now", "kil": "kill", "kiling": "killing"}
_TYPOS = [
    (r"\bsu[aiy]?[cs]{1,2}[iy]?d(?:al|el|ial|le|il)\b", "suicidal"),  # suicidel, sucidal
    (r"\bsu[aiy]?[cs]{1,2}[iy]?de?\b", "suicide"),                     # sucide, suiside
    (r"\bmy ?s(?:el|le|e)f\b", "myself"), (r"\b(him|her|them) (sel(?:f|ves))\b", r"\1\2"),
    (r"\bany more\b", "anymore"), (r"\bwant 2\b", "want to"),
]
_CONTRACTIONS = [(r"\bcan't\b", "can not"), (r"\bwon't\b", "will not"), (r"n't\b", " not"),
                 (r"'m\b", " am"), (r"'ll\b", " will"), (r"'ve\b", " have"), (r"'re\b", " are"),
                 (r"'d\b", " would")]
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u02bc": "'", "`": "'",
                         "\u00b4": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"'})


@dataclass(frozen=True)
class SafetyVerdict:
    kind: Kind     # CRISIS, MEDICAL, or CONCERN (answer normally, resources line under it)
    message: str   # fixed, human-written text: instead of an answer, or under it for "concern"
    language: str = "en"  # "en" | "es": the message's language, which picked the text


_CRISIS = [re.compile(p) for p in CRISIS_PATTERNS]
_CRISIS_ES = [re.compile(p) for p in CRISIS_PATTERNS_ES]
_MEDICAL = [re.compile(p) for p in MEDICAL_PATTERNS]
_WORD_RE = re.compile(r"\b(?:" + "|".join(_WORDS) + r")\b")


def normalize(text: str) -> str:
    """Fold case, unicode, quotes, contractions and common misspellings into one spelling."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_QUOTES)
    text = re.sub(r"[-\u2010-\u2015_*\"()\[\]~]", " ", text)  # "self-harm" == "self harm"
    for pattern, repl in _CONTRACTIONS:
        text = re.sub(pattern, repl, text)
    text = text.replace("'", "")  # "he's" -> "hes", "friend's" -> "friends"
    text = re.sub(r"\s+", " ", text).strip()
    text = _WORD_RE.sub(lambda m: _WORDS[m.group()], text)
    for pattern, repl in _TYPOS:
        text = re.sub(pattern, repl, text)
    return text


def _fold_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def check(message: str) -> SafetyVerdict | None:
    """The rules alone: a fixed crisis or medical response for `message`, or None.

    Crisis is checked first: "should I overdose on my meds" must reach a crisis line, not a
    pharmacist. Reads at most RULE_SCAN_CHARS characters.
    """
    message = message[:RULE_SCAN_CHARS]
    text = normalize(message)
    lang = language(message)
    if any(p.search(text) for p in _CRISIS) or any(p.search(_fold_accents(text)) for p in _CRISIS_ES):
        return SafetyVerdict(Kind.CRISIS, CRISIS_MESSAGES[lang], lang)
    if any(p.search(text) for p in _MEDICAL):
        return SafetyVerdict(Kind.MEDICAL, MEDICAL_MESSAGE, lang)
    return None


def combine(rule_kind: Kind | None, model_kind: str) -> Kind | None:
    """One outcome from the rules' ("crisis", "medical" or None) and the detector's verdicts.

    Either half saying crisis wins; a medical question stays a medical referral even when the
    detector hears distress in it; the detector's "concern" only adds a line to an answer.
    """
    if Kind.CRISIS in (rule_kind, model_kind):
        return Kind.CRISIS
    return rule_kind or (Kind.CONCERN if model_kind == "concern" else None)


def storable(message: str, detector: CrisisDetector | None = None) -> bool:
    """Whether a message may ever be written to a store (see STORE_DISTRESS_SHARE): the one rule
    for the unanswered-questions list and the ratings alike."""
    text = normalize(message[:RULE_SCAN_CHARS])
    if _NOT_STORED_WORDS.search(text):
        return False
    verdict = screen(message, detector)
    if verdict and verdict.kind in SENSITIVE:
        return False
    if detector is None:
        return True
    return detector.distress_share(message[:SCAN_CHARS]) < STORE_DISTRESS_SHARE


def screen(message: str, detector: CrisisDetector | None = None) -> SafetyVerdict | None:
    """Rules and detector together: a crisis, medical or concern verdict, or None to answer normally.

    The detector reads the first SCAN_CHARS characters; the rules, RULE_SCAN_CHARS.
    """
    message = message[:RULE_SCAN_CHARS]
    rule = check(message)
    if rule and rule.kind == Kind.CRISIS:  # the floor: no need to run the model
        return rule
    kind = combine(rule.kind if rule else None, detector.verdict(message) if detector else "none")
    lang = language(message)
    if kind == Kind.CRISIS:
        return SafetyVerdict(Kind.CRISIS, CRISIS_MESSAGES[lang], lang)
    if kind == Kind.CONCERN:
        return SafetyVerdict(Kind.CONCERN, CONCERN_NOTICES[lang], lang)
    return rule
