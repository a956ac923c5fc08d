"""The English-German lexicon of the synthetic sentence grammar (see :mod:`mmseq.data.synth.sentences`).

Each table is a block of lines parsed once at import. German nouns avoid the weak (n-declension) masculines
and verbs avoid separable prefixes and dative objects, so the small morphology in ``sentences.py`` is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

# english singular, english plural | German gender, singular, plural | tags
_NOUNS = """
man men|m Mann Männer|person
woman women|f Frau Frauen|person
child children|n Kind Kinder|person
girl girls|n Mädchen Mädchen|person
teacher teachers|m Lehrer Lehrer|person
doctor doctors|m Arzt Ärzte|person
baker bakers|m Bäcker Bäcker|person
cook cooks|m Koch Köche|person
driver drivers|m Fahrer Fahrer|person
singer singers|f Sängerin Sängerinnen|person
painter painters|m Maler Maler|person
sister sisters|f Schwester Schwestern|person
brother brothers|m Bruder Brüder|person
mother mothers|f Mutter Mütter|person
father fathers|m Vater Väter|person
friend friends|m Freund Freunde|person
king kings|m König Könige|person
queen queens|f Königin Königinnen|person
worker workers|m Arbeiter Arbeiter|person
pupil pupils|f Schülerin Schülerinnen|person
guest guests|m Gast Gäste|person
nurse nurses|f Krankenschwester Krankenschwestern|person
writer writers|m Schriftsteller Schriftsteller|person
dancer dancers|f Tänzerin Tänzerinnen|person
uncle uncles|m Onkel Onkel|person
aunt aunts|f Tante Tanten|person
grandmother grandmothers|f Großmutter Großmütter|person
waiter waiters|m Kellner Kellner|person
fisherman fishermen|m Fischer Fischer|person
hunter hunters|m Jäger Jäger|person
farmer farmers|m Landwirt Landwirte|person
dog dogs|m Hund Hunde|animal
cat cats|f Katze Katzen|animal
horse horses|n Pferd Pferde|animal
cow cows|f Kuh Kühe|animal
bird birds|m Vogel Vögel|animal
fish fish|m Fisch Fische|animal
mouse mice|f Maus Mäuse|animal
pig pigs|n Schwein Schweine|animal
sheep sheep|n Schaf Schafe|animal
goat goats|f Ziege Ziegen|animal
duck ducks|f Ente Enten|animal
wolf wolves|m Wolf Wölfe|animal
fox foxes|m Fuchs Füchse|animal
frog frogs|m Frosch Frösche|animal
snake snakes|f Schlange Schlangen|animal
rabbit rabbits|n Kaninchen Kaninchen|animal
chicken chickens|n Huhn Hühner|animal
owl owls|f Eule Eulen|animal
tiger tigers|m Tiger Tiger|animal
whale whales|m Wal Wale|animal
spider spiders|f Spinne Spinnen|animal
bee bees|f Biene Bienen|animal
book books|n Buch Bücher|thing
car cars|n Auto Autos|thing place
letter letters|m Brief Briefe|thing
apple apples|m Apfel Äpfel|thing
ball balls|m Ball Bälle|thing
cup cups|f Tasse Tassen|thing
bottle bottles|f Flasche Flaschen|thing
key keys|m Schlüssel Schlüssel|thing
chair chairs|m Stuhl Stühle|thing place
table tables|m Tisch Tische|thing place
bag bags|f Tasche Taschen|thing
box boxes|f Kiste Kisten|thing place
hat hats|m Hut Hüte|thing
coat coats|m Mantel Mäntel|thing
shirt shirts|n Hemd Hemden|thing
shoe shoes|m Schuh Schuhe|thing
picture pictures|n Bild Bilder|thing
clock clocks|f Uhr Uhren|thing
lamp lamps|f Lampe Lampen|thing
window windows|n Fenster Fenster|thing place
door doors|f Tür Türen|thing place
flower flowers|f Blume Blumen|thing
tree trees|m Baum Bäume|thing place
stone stones|m Stein Steine|thing
cake cakes|m Kuchen Kuchen|thing
egg eggs|n Ei Eier|thing
song songs|n Lied Lieder|thing
story stories|f Geschichte Geschichten|thing
newspaper newspapers|f Zeitung Zeitungen|thing
map maps|f Karte Karten|thing
phone phones|n Telefon Telefone|thing
computer computers|m Computer Computer|thing
bicycle bicycles|n Fahrrad Fahrräder|thing
boat boats|n Boot Boote|thing place
train trains|m Zug Züge|thing place
ship ships|n Schiff Schiffe|thing place
plate plates|m Teller Teller|thing
knife knives|n Messer Messer|thing
spoon spoons|m Löffel Löffel|thing
glass glasses|n Glas Gläser|thing
pencil pencils|m Bleistift Bleistifte|thing
ring rings|m Ring Ringe|thing
gift gifts|n Geschenk Geschenke|thing
ticket tickets|f Fahrkarte Fahrkarten|thing
candle candles|f Kerze Kerzen|thing
blanket blankets|f Decke Decken|thing
basket baskets|m Korb Körbe|thing
mirror mirrors|m Spiegel Spiegel|thing
umbrella umbrellas|m Regenschirm Regenschirme|thing
guitar guitars|f Gitarre Gitarren|thing
drum drums|f Trommel Trommeln|thing
banana bananas|f Banane Bananen|thing
orange oranges|f Orange Orangen|thing
potato potatoes|f Kartoffel Kartoffeln|thing
carrot carrots|f Karotte Karotten|thing
bed beds|n Bett Betten|thing place
toy toys|n Spielzeug Spielzeuge|thing
coin coins|f Münze Münzen|thing
treasure treasures|m Schatz Schätze|thing
television televisions|m Fernseher Fernseher|thing
garage garages|f Garage Garagen|place
garden gardens|m Garten Gärten|place
park parks|m Park Parks|place
house houses|n Haus Häuser|place
kitchen kitchens|f Küche Küchen|place
school schools|f Schule Schulen|place
station stations|m Bahnhof Bahnhöfe|place
forest forests|m Wald Wälder|place
city cities|f Stadt Städte|place
village villages|n Dorf Dörfer|place
river rivers|m Fluss Flüsse|place
lake lakes|m See Seen|place
mountain mountains|m Berg Berge|place
street streets|f Straße Straßen|place
market markets|m Markt Märkte|place
library libraries|f Bibliothek Bibliotheken|place
church churches|f Kirche Kirchen|place
hospital hospitals|n Krankenhaus Krankenhäuser|place
office offices|n Büro Büros|place
shop shops|m Laden Läden|place
hotel hotels|n Hotel Hotels|place
bridge bridges|f Brücke Brücken|place
field fields|n Feld Felder|place
room rooms|n Zimmer Zimmer|place
castle castles|n Schloss Schlösser|place
beach beaches|m Strand Strände|place
island islands|f Insel Inseln|place
harbour harbours|m Hafen Häfen|place
museum museums|n Museum Museen|place
restaurant restaurants|n Restaurant Restaurants|place
farm farms|m Bauernhof Bauernhöfe|place
"""

# english | German predicative[:attributive stem when it differs]
_ADJECTIVES = """
big|groß
small|klein
old|alt
young|jung
new|neu
red|rot
blue|blau
green|grün
yellow|gelb
black|schwarz
white|weiß
brown|braun
grey|grau
happy|glücklich
sad|traurig
tired|müde
hungry|hungrig
clever|klug
quiet|ruhig
loud|laut
fast|schnell
slow|langsam
beautiful|schön
ugly|hässlich
strong|stark
weak|schwach
tall|groß
long|lang
warm|warm
cold|kalt
hot|heiß
heavy|schwer
light|leicht
cheap|billig
expensive|teuer:teur
rich|reich
poor|arm
friendly|freundlich
angry|wütend
brave|mutig
lazy|faul
busy|beschäftigt
famous|berühmt
strange|seltsam
funny|lustig
wild|wild
gentle|sanft
clean|sauber
dirty|schmutzig
empty|leer
full|voll
dark|dunkel:dunkl
bright|hell
soft|weich
hard|hart
round|rund
sharp|scharf
sweet|süß
fresh|frisch
dry|trocken
wet|nass
pretty|hübsch
proud|stolz
shy|schüchtern
sleepy|schläfrig
tiny|winzig
huge|riesig
modern|modern
honest|ehrlich
polite|höflich
kind|nett
"""

# english base, 3sg, past | German infinitive, 3sg present, 3sg past ("_" joins multi-word English verbs)
_TRANSITIVE = """
see sees saw|sehen sieht sah
buy buys bought|kaufen kauft kaufte
read reads read|lesen liest las
find finds found|finden findet fand
like likes liked|mögen mag mochte
eat eats ate|essen isst aß
drink drinks drank|trinken trinkt trank
carry carries carried|tragen trägt trug
paint paints painted|malen malt malte
wash washes washed|waschen wäscht wusch
hold holds held|halten hält hielt
open opens opened|öffnen öffnet öffnete
close closes closed|schließen schließt schloss
need needs needed|brauchen braucht brauchte
build builds built|bauen baut baute
catch catches caught|fangen fängt fing
hear hears heard|hören hört hörte
love loves loved|lieben liebt liebte
visit visits visited|besuchen besucht besuchte
watch watches watched|beobachten beobachtet beobachtete
cook cooks cooked|kochen kocht kochte
fix fixes fixed|reparieren repariert reparierte
clean cleans cleaned|putzen putzt putzte
draw draws drew|zeichnen zeichnet zeichnete
write writes wrote|schreiben schreibt schrieb
lose loses lost|verlieren verliert verlor
forget forgets forgot|vergessen vergisst vergaß
look_for looks_for looked_for|suchen sucht suchte
take takes took|nehmen nimmt nahm
throw throws threw|werfen wirft warf
pull pulls pulled|ziehen zieht zog
push pushes pushed|schieben schiebt schob
touch touches touched|berühren berührt berührte
hide hides hid|verstecken versteckt versteckte
steal steals stole|stehlen stiehlt stahl
order orders ordered|bestellen bestellt bestellte
count counts counted|zählen zählt zählte
greet greets greeted|begrüßen begrüßt begrüßte
feed feeds fed|füttern füttert fütterte
chase chases chased|jagen jagt jagte
choose chooses chose|wählen wählt wählte
check checks checked|prüfen prüft prüfte
fill fills filled|füllen füllt füllte
break breaks broke|zerbrechen zerbricht zerbrach
"""

# ditransitive: "X gives the book to the man" -> "X gibt dem Mann das Buch"
_DITRANSITIVE = """
give gives gave|geben gibt gab
send sends sent|schicken schickt schickte
show shows showed|zeigen zeigt zeigte
bring brings brought|bringen bringt brachte
sell sells sold|verkaufen verkauft verkaufte
"""

_INTRANSITIVE = """
sleep sleeps slept|schlafen schläft schlief
run runs ran|laufen läuft lief
sing sings sang|singen singt sang
dance dances danced|tanzen tanzt tanzte
laugh laughs laughed|lachen lacht lachte
cry cries cried|weinen weint weinte
swim swims swam|schwimmen schwimmt schwamm
work works worked|arbeiten arbeitet arbeitete
play plays played|spielen spielt spielte
wait waits waited|warten wartet wartete
sit sits sat|sitzen sitzt saß
stand stands stood|stehen steht stand
live lives lived|wohnen wohnt wohnte
jump jumps jumped|springen springt sprang
smile smiles smiled|lächeln lächelt lächelte
talk talks talked|reden redet redete
rest rests rested|ruhen ruht ruhte
fly flies flew|fliegen fliegt flog
shout shouts shouted|rufen ruft rief
walk walks walked|wandern wandert wanderte
"""

NAMES = (
    "anna peter maria thomas paul lisa tom julia david sarah max emma ben laura jan nina leo sophie felix clara "
    "oscar hannah lucas mia noah eva otto greta hugo ida"
).split()

# english | German; sentence-initial time phrases (German inverts subject and verb after them)
TIME_PHRASES = [
    ("yesterday", "gestern"), ("last night", "gestern Abend"), ("this morning", "heute Morgen"),
    ("last week", "letzte Woche"), ("in the evening", "am Abend"), ("after lunch", "nach dem Mittagessen"),
    ("on monday", "am Montag"), ("on tuesday", "am Dienstag"), ("on wednesday", "am Mittwoch"),
    ("on thursday", "am Donnerstag"), ("on friday", "am Freitag"), ("on saturday", "am Samstag"),
    ("on sunday", "am Sonntag"), ("two days ago", "vor zwei Tagen"), ("last year", "letztes Jahr"),
]  # fmt: skip
MANNER_ADVERBS = [
    ("quickly", "schnell"), ("slowly", "langsam"), ("quietly", "leise"), ("loudly", "laut"),
    ("happily", "fröhlich"), ("again", "wieder"), ("together", "zusammen"), ("alone", "allein"),
    ("often", "oft"), ("every day", "jeden Tag"), ("at home", "zu Hause"), ("outside", "draußen"),
]  # fmt: skip
PREPOSITIONS = [("in", "in"), ("on", "auf"), ("under", "unter"), ("behind", "hinter"), ("next to", "neben"),
                ("in front of", "vor")]  # fmt: skip
CONJUNCTIONS = [("because", "weil"), ("while", "während"), ("although", "obwohl")]
MODALS = [  # english 3sg, english plural, German 3sg, German 3pl
    ("can", "can", "kann", "können"), ("must", "must", "muss", "müssen"), ("will", "will", "wird", "werden"),
    ("wants to", "want to", "will", "wollen"),
]  # fmt: skip

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()  # fmt: skip
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_DE_ONES = "null eins zwei drei vier fünf sechs sieben acht neun zehn elf zwölf dreizehn vierzehn fünfzehn " \
           "sechzehn siebzehn achtzehn neunzehn".split()  # fmt: skip
_DE_TENS = "_ _ zwanzig dreißig vierzig fünfzig sechzig siebzig achtzig neunzig".split()


@dataclass(frozen=True)
class Noun:
    en: str
    en_plural: str
    gender: str  # "m", "f" or "n"
    de: str
    de_plural: str
    tags: frozenset[str]


@dataclass(frozen=True)
class Adjective:
    en: str
    de: str  # predicative
    de_stem: str  # attributive stem, before endings


@dataclass(frozen=True)
class Verb:
    en: str
    en_3sg: str
    en_past: str
    de: str  # infinitive = 3rd person plural present
    de_3sg: str
    de_past: str

    @property
    def de_past_plural(self) -> str:
        return self.de_past + ("n" if self.de_past.endswith("e") else "en")


def _rows(block: str) -> list[list[str]]:
    return [line.split("|") for line in block.strip().splitlines()]


def _verbs(block: str) -> list[Verb]:
    out = []
    for en, de in _rows(block):
        e, d = [w.replace("_", " ") for w in en.split()], de.split()
        out.append(Verb(e[0], e[1], e[2], d[0], d[1], d[2]))
    return out


NOUNS = [
    Noun(*en.split(), de.split()[0], de.split()[1], de.split()[2], frozenset(tags.split()))
    for en, de, tags in _rows(_NOUNS)
]
ADJECTIVES = [Adjective(en, *(de.split(":") if ":" in de else (de, de))) for en, de in _rows(_ADJECTIVES)]
TRANSITIVE = _verbs(_TRANSITIVE)
DITRANSITIVE = _verbs(_DITRANSITIVE)
INTRANSITIVE = _verbs(_INTRANSITIVE)


def number_en(n: int) -> str:
    """English number words for 0-999 without hyphens: ``327 -> "three hundred twenty seven"``."""
    if n >= 100:
        rest = n % 100
        return f"{_ONES[n // 100]} hundred" + (f" {number_en(rest)}" if rest else "")
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10] + (f" {_ONES[n % 10]}" if n % 10 else "")


def number_de(n: int) -> str:
    """German number word for 0-999 as one word: ``327 -> "dreihundertsiebenundzwanzig"``."""
    if n >= 100:
        rest = n % 100
        head = "ein" if n // 100 == 1 else _DE_ONES[n // 100]
        return f"{head}hundert" + (number_de(rest) if rest else "")
    if n < 20:
        return _DE_ONES[n]
    ones = n % 10
    unit = "ein" if ones == 1 else _DE_ONES[ones]
    return (f"{unit}und" if ones else "") + _DE_TENS[n // 10]
