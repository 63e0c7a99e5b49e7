"""Synthetic protected health information: names and addresses from Faker's en_US word lists.

Faker's own generator machinery costs about 0.3 ms a patient (format parsing, one `random` call
per digit); here each field is one draw from the case's `Uniforms`, over the same word lists and
name weights, so a cohort's PHI costs microseconds. Every value is made up: phone numbers use
the fictional 555 exchange and e-mail addresses the reserved example.com domain.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from itertools import accumulate

from clinicgym.patients.cases.case import PHI
from clinicgym.patients.knowledge.uniforms import Uniforms

ENCOUNTER_YEAR = 2025
"""Encounter dates fall in this year, so ages and dates of birth never depend on today's date."""
PHI_DRAWS = 18
"""Uniforms one PHI record takes (see `draw_phi`)."""


@cache
def _words() -> dict[str, tuple[list[str], list[float]]]:
    """Faker en_US word lists with cumulative weights (uniform where Faker has none)."""
    from faker.providers.address.en_US import Provider as Address
    from faker.providers.person.en_US import Provider as Person

    def weighted(d: dict[str, float]) -> tuple[list[str], list[float]]:
        return list(d), list(accumulate(d.values()))

    def flat(seq: tuple[str, ...] | list[str]) -> tuple[list[str], list[float]]:
        return list(seq), list(accumulate(1.0 for _ in seq))

    return {
        "female": weighted(Person.first_names_female),
        "male": weighted(Person.first_names_male),
        "last": weighted(Person.last_names),
        "street": flat(Address.street_suffixes),
        "city": flat(Address.city_suffixes),
        "state": flat(Address.states_abbr),
    }


def _word(u: Uniforms, key: str) -> str:
    words, cumulative = _words()[key]
    return words[u.pick(cumulative)]


def draw_phi(age: int, sex: str, u: Uniforms) -> PHI:
    """One synthetic identity for a patient of `age` and `sex`; takes `PHI_DRAWS` uniforms."""
    encounter = dt.date(ENCOUNTER_YEAR, 1, 1) + dt.timedelta(days=u.below(365))
    dob = encounter.replace(year=encounter.year - age) - dt.timedelta(days=u.below(365))
    first = _word(u, sex)
    name = f"{first} {_word(u, 'last')}"
    street = f"{100 + u.below(99_900)} {_word(u, 'last')} {_word(u, 'street')}"
    city = f"{_word(u, 'last')}{_word(u, 'city')}"
    return PHI(
        name=name,
        date_of_birth=dob.isoformat(),
        mrn=f"MRN-{u.digits(8)}",
        address=f"{street}, {city}, {_word(u, 'state')} {u.digits(5)}",
        phone=f"555-{u.digits(3)}-{u.digits(4)}",
        email=f"{first.lower()}.{u.letters(4)}{u.digits(2)}@example.com",
        insurance_id=f"INS-{u.letters(2).upper()}-{u.digits(6)}",
    )
