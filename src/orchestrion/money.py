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

from functools import lru_cache
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import polars as pl

__all__ = ["DEFAULT_LOCALE", "check_locale", "format_money", "money_expr", "money_locale"]

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
    from babel.numbers import format_currency, format_decimal

    if currency is None:
        return format_decimal(amount, format="#,##0.00", locale=locale)
    return format_currency(amount, currency, locale=locale)


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
