"""Money as people read it: one function, :func:`format_money`, for every amount a person sees
(the CLI, the API's titles and summaries, the web page, the outbox, why texts, run summaries).

Formatting follows the locale's rules from Babel's CLDR data: the symbol and where it goes, the
decimal and grouping marks, the currency's own number of decimals. The locale is the
``ORCHESTRION_LOCALE`` setting; unset, each currency is written the way its home locale writes it
(en_GB for GBP), so a British shop reads "£143.10" out of the box.

>>> format_money(143.1, "GBP")
'£143.10'
>>> format_money(1234.5, "EUR", "de_DE")
'1.234,50\\xa0€'
>>> format_money(1234.5, "GBP", "en_US")
'£1,234.50'
>>> format_money(2.5, None)
'2.50'
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import polars as pl

__all__ = ["DEFAULT_LOCALE", "check_currency", "check_locale", "format_money", "money_expr", "money_locale"]

DEFAULT_LOCALE: Final = "en_GB"
"""The locale of an amount with no currency or a currency not listed in :data:`HOME_LOCALES`."""

HOME_LOCALES: Final = {
    "GBP": "en_GB", "USD": "en_US", "EUR": "en_IE", "CAD": "en_CA", "AUD": "en_AU", "NZD": "en_NZ",
    "INR": "en_IN", "JPY": "ja_JP", "CHF": "de_CH", "SEK": "sv_SE", "NOK": "nb_NO", "DKK": "da_DK",
    "PLN": "pl_PL", "BRL": "pt_BR",
}
"""Where a currency is written when no locale is set: its home locale (English where that is one)."""


def money_locale(currency: str | None, locale: str | None = None) -> str:
    """The locale an amount in ``currency`` is written in: ``locale`` when set, else the currency's home.

    >>> money_locale("GBP"), money_locale("USD"), money_locale("GBP", "fr_FR"), money_locale(None)
    ('en_GB', 'en_US', 'fr_FR', 'en_GB')
    """
    return locale or HOME_LOCALES.get((currency or "").upper(), DEFAULT_LOCALE)


def check_currency(code: str) -> str:
    """``code`` upper-cased when it is an ISO 4217 currency Babel knows, else ValueError naming the fix.

    >>> check_currency("gbp")
    'GBP'
    >>> check_currency("XXXX")
    Traceback (most recent call last):
    ...
    ValueError: currency 'XXXX' is not an ISO 4217 code; write it like GBP, EUR or USD
    """
    upper = code.strip().upper()
    if upper not in _currencies():
        raise ValueError(f"currency {code!r} is not an ISO 4217 code; write it like GBP, EUR or USD")
    return upper


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    from babel.numbers import list_currencies

    return frozenset(list_currencies())


def check_locale(locale: str) -> str:
    """``locale`` when Babel knows it (``en_GB``, ``de-DE``), else ValueError naming the fix.

    >>> check_locale("de-DE")
    'de_DE'
    """
    from babel import Locale, UnknownLocaleError

    try:
        return str(Locale.parse(locale.replace("-", "_")))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError(f"{locale!r} is not a locale Babel knows; write it like en_GB or de_DE") from exc


def format_money(amount: float | int | None, currency: str | None, locale: str | None = None) -> str:
    """``amount`` in ``currency`` as ``locale`` writes it (see :func:`money_locale`); an empty
    string for no amount, the bare number (two decimals) for no currency."""
    if amount is None:
        return ""
    # Amounts repeat (unit prices, totals of the same cart): cached by value, as rounded to cents.
    return _format(round(float(amount), 2), (currency or "").upper() or None, money_locale(currency, locale))


@lru_cache(maxsize=65_536)
def _format(amount: float, currency: str | None, locale: str) -> str:
    shape = _shape(currency, locale)
    if shape is None:
        return _babel(amount, currency, locale)
    return _apply(shape, amount)


_Shape = tuple[str, str, str, str, str, str, int]
"""How a locale writes a currency: prefix, suffix, negative prefix, negative suffix, group mark,
decimal mark, decimals."""


def _babel(amount: float, currency: str | None, locale: str) -> str:
    from babel.numbers import format_currency, format_decimal

    if currency is None:
        return format_decimal(amount, format="#,##0.00", locale=locale)
    return format_currency(amount, currency, locale=locale)


def _apply(shape: _Shape, amount: float) -> str:
    prefix, suffix, minus_prefix, minus_suffix, group, decimal, digits = shape
    # Decimal from the shortest repr, rounded half-even: exactly as Babel rounds.
    number = format(abs(Decimal(repr(amount))), f",.{digits}f")
    number = number.replace(",", "\0").replace(".", decimal).replace("\0", group)
    return f"{minus_prefix}{number}{minus_suffix}" if amount < 0 else f"{prefix}{number}{suffix}"


@lru_cache(maxsize=256)
def _shape(currency: str | None, locale: str) -> _Shape | None:
    """Babel's way of writing ``currency`` in ``locale``, learnt once so that each amount costs a
    string format instead of a CLDR pattern walk (~40 µs: a second per 25,000 goal titles). None
    (Babel for every amount) unless it writes a set of probe amounts exactly as Babel does — a
    locale grouping digits other than by thousands (en_IN) keeps Babel."""
    from babel.numbers import get_currency_precision, get_decimal_symbol, get_group_symbol

    digits = get_currency_precision(currency) if currency else 2
    group, decimal = get_group_symbol(locale), get_decimal_symbol(locale)
    probe = 1234567.0
    plain = format(Decimal(probe), f",.{digits}f").replace(",", "\0").replace(".", decimal).replace("\0", group)
    positive, negative = _babel(probe, currency, locale), _babel(-probe, currency, locale)
    if positive.count(plain) != 1 or negative.count(plain) != 1:
        return None
    (prefix, suffix), (minus_prefix, minus_suffix) = positive.split(plain), negative.split(plain)
    shape: _Shape = (prefix, suffix, minus_prefix, minus_suffix, group, decimal, digits)
    checks = (0.0, 0.5, 2.675, 9.995, 999.99, 1000.0, 12345.678, -0.01, -1234.5, 98765432.1)
    return shape if all(_apply(shape, v) == _babel(v, currency, locale) for v in checks) else None


def money_expr(amount: pl.Expr, currency: str | None, locale: str | None = None) -> pl.Expr:
    """:func:`format_money` over a polars column of amounts (titles written for many goals at once).

    >>> import polars as pl
    >>> pl.DataFrame({"t": [145.2, 3.0]}).select(money_expr(pl.col("t"), "GBP")).to_series().to_list()
    ['£145.20', '£3.00']
    """
    import polars as pl

    def column(values: pl.Series) -> pl.Series:
        return pl.Series([format_money(v, currency, locale) for v in values], dtype=pl.String)

    return amount.map_batches(column, return_dtype=pl.String)
