#!/usr/bin/env python3
"""Generate tests/guardrails/faker.jsonl: personal data from Faker, a
generator this project did not write, in twelve locales, each value in a
carrier sentence of its locale, and near-misses Faker also generates
(EAN-13 and UPC barcodes, ISBNs, dates, times, amounts, order numbers).

Faker (https://faker.readthedocs.io, MIT) is pip-installable; the output
is committed, so tests need neither network nor Faker. Seeded: rerunning
with the same Faker version gives the same file (the version is recorded
in the first line).

Each line: {"id", "locale", "kind", "text", "labels"}; labels are the
detectors that must fire ([] for a near-miss).

Usage: pip install faker && python3 tests/guardrails/gen_faker.py
"""

import json
import os
import random

import faker

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "faker.jsonl")
PER_KIND = 40

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "ja_JP", "zh_CN", "hi_IN", "nl_NL", "pl_PL"]

# Carrier sentences by locale: where a phone number, card or account
# number is given in running text.
PHONE = {
    "en_US": ["Call me at {v} after five.", "Phone: {v}", "You can reach our office on {v}."],
    "en_GB": ["Ring me on {v} tomorrow.", "Tel: {v}", "My mobile is {v}."],
    "de_DE": ["Rufen Sie mich unter {v} an.", "Telefon: {v}", "Meine Nummer ist {v}."],
    "fr_FR": ["Appelez-moi au {v} demain.", "Tél. : {v}", "Mon numéro est le {v}."],
    "es_ES": ["Llámame al {v} mañana.", "Teléfono: {v}", "Mi número es {v}."],
    "it_IT": ["Chiamami al {v} domani.", "Telefono: {v}", "Il mio numero è {v}."],
    "pt_BR": ["Me ligue no {v} amanhã.", "Telefone: {v}", "Meu celular é {v}."],
    "ja_JP": ["電話番号は {v} です。", "連絡先: {v}", "携帯 {v} までお願いします。"],
    "zh_CN": ["我的电话是 {v}，请联系。", "手机: {v}", "请拨打 {v} 联系我们。"],
    "hi_IN": ["मेरा नंबर {v} है।", "Phone: {v}", "Call me on {v} please."],
    "nl_NL": ["Bel me op {v} morgen.", "Telefoon: {v}", "Mijn nummer is {v}."],
    "pl_PL": ["Zadzwoń do mnie pod {v} jutro.", "Telefon: {v}", "Mój numer to {v}."],
}
GENERIC = ["Details: {v}", "{v}", "Please use {v} for this."]

CARD_TYPES = ["maestro", "mastercard", "visa16", "visa13", "visa19", "amex", "discover", "diners", "jcb15", "jcb16"]

NEAR = [
    ("ean13", lambda f: f"EAN {f.ean13()}"),
    ("ean13_bare", lambda f: f"Barcode {f.ean13()} scanned at the dock."),
    ("upc", lambda f: f"UPC {f.ean(length=13)[1:]}"),
    ("isbn", lambda f: f"ISBN {f.isbn13()}"),
    ("date", lambda f: f"Meeting on {f.date()} at {f.time()}"),
    ("order", lambda f: f"Order {f.numerify('##########')} has shipped."),
    ("tracking", lambda f: f"Tracking number {f.numerify('############')}"),
    ("invoice", lambda f: f"Invoice no. {f.numerify('INV-########')}"),
    ("amount", lambda f: f"Total: {f.pricetag()}"),
    ("version", lambda f: f"Upgrade firmware to {random.randint(1, 9)}.{random.randint(0, 20)}.{random.randint(0, 9)}.{random.randint(0, 99)}"),
]


# National identifiers (detectors a profile switches on by name).
# (Faker's en_GB `ssn()` is HMRC's dummy `ZZ 12 34 56 T`, whose suffix is
# never issued: UK NINOs are tested in policy/src/guard/tests.rs instead.)
NATIONAL = {
    "pt_BR": [("br_cpf", lambda f: f.cpf())],
    "es_ES": [("es_dni", lambda f: f.nif()), ("es_dni", lambda f: f.nie())],
    "it_IT": [("it_codice_fiscale", lambda f: f.ssn())],
    "fr_FR": [("fr_nir", lambda f: f.ssn())],
}
CANADA = ("en_CA", "ca_sin")


def main():
    random.seed(20261202)
    lines = [{"faker_version": faker.VERSION}]
    n = 0
    for loc in LOCALES:
        f = faker.Faker(loc)
        f.seed_instance(LOCALES.index(loc) + 7)

        def add(kind, text, labels):
            nonlocal n
            n += 1
            lines.append({"id": f"{kind}-{loc}-{n}", "locale": loc, "kind": kind, "text": text, "labels": labels})

        for i in range(PER_KIND):
            add("phone", random.choice(PHONE[loc]).format(v=f.phone_number()), ["phone"])
            add("email", random.choice(GENERIC).format(v=f.email()), ["email"])
            add("ipv4", random.choice(GENERIC).format(v=f.ipv4_public()), ["ipv4"])
            add("ipv6", random.choice(GENERIC).format(v=f.ipv6()), ["ipv6"])
            try:
                add("iban", random.choice(GENERIC).format(v=f.iban()), ["iban"])
            except AttributeError:
                pass
        if loc == "en_US":
            # The card provider of Faker's default locale knows every
            # network's ranges and lengths.
            for t in CARD_TYPES:
                for i in range(PER_KIND):
                    add("card", random.choice(GENERIC).format(v=f.credit_card_number(card_type=t)), ["card"])
            for i in range(PER_KIND):
                add("ssn", random.choice(GENERIC).format(v=f.ssn()), ["ssn"])
        for kind, make in NATIONAL.get(loc, []):
            for i in range(PER_KIND // 2):
                add(kind, random.choice(GENERIC).format(v=make(f)), [kind])
        for name, make in NEAR:
            for i in range(4):
                add(f"near_{name}", make(f), [])
        for i in range(PER_KIND // 2):
            add("near_prose", f.paragraph(nb_sentences=3), [])
    f = faker.Faker(CANADA[0])
    f.seed_instance(99)
    for i in range(PER_KIND // 2):
        n += 1
        lines.append({"id": f"{CANADA[1]}-{CANADA[0]}-{n}", "locale": CANADA[0], "kind": CANADA[1],
                      "text": random.choice(GENERIC).format(v=f.ssn()), "labels": [CANADA[1]]})
    with open(OUT, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
