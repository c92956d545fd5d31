"""ISO 4217 currencies: which codes exist and how many digits their minor unit has.

From Babel's copy of the Unicode CLDR (``babel.numbers``), kept current with CLDR
releases, rather than a table of our own. CLDR's ``fractions`` data gives each
currency's digits (JPY 0, USD 2, KWD 3), the minor unit amounts are counted in.
"""

from __future__ import annotations

import functools

from babel import numbers


@functools.cache
def minor_digits(code: str) -> int | None:
    """Returns the digits of ``code``'s minor unit (2 for ``USD``), or None when it is no ISO 4217 currency.

    Cached: CLDR's data is fixed for the installed Babel, so an answer never changes.
    """
    if len(code) != 3 or not code.isascii() or not code.isupper() or not numbers.is_currency(code):
        return None
    return int(numbers.get_currency_precision(code))


def format_minor(amount: int, code: str) -> str:
    """Returns ``amount`` minor units of ``code`` as text in major units, ``"1234.50 USD"`` (no float).

    Args:
        amount: Minor units; negative for a credit.
        code: An ISO 4217 code (:func:`minor_digits` knows it).
    """
    digits = minor_digits(code) or 0
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), 10**digits)
    return f"{sign}{whole}.{part:0{digits}d} {code}" if digits else f"{sign}{whole} {code}"
