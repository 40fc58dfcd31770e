"""Money written one way: orchestrion.money against Babel itself, whatever the locale."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from babel.numbers import format_currency, format_decimal

from orchestrion.money import format_money, money_expr

LOCALES = ("en_GB", "en_US", "de_DE", "fr_FR", "de_CH", "ja_JP", "en_IN", "ar_EG", "nl_NL", "pt_BR", "sv_SE")
CURRENCIES = ("GBP", "EUR", "JPY", "USD", None)


@pytest.mark.parametrize("locale", LOCALES)
def test_every_amount_is_written_as_babel_writes_it(locale: str) -> None:
    """The learnt shape (a string format per amount) and Babel agree on 500 amounts, ties and
    negatives included, for five currencies; a locale the shape cannot follow uses Babel."""
    amounts = [*np.round(np.random.default_rng(7).uniform(-500, 2e6, 495), 2), 2.675, 0.005, 9.995, 0.0, -0.01]
    for currency in CURRENCIES:
        for amount in amounts:
            value = round(float(amount), 2)
            expected = (
                format_currency(value, currency, locale=locale) if currency
                else format_decimal(value, format="#,##0.00", locale=locale)
            )
            assert format_money(amount, currency, locale) == expected, (amount, currency, locale)


def test_defaults_and_columns() -> None:
    assert format_money(143.1, "GBP") == "£143.10" and format_money(5, "USD") == "$5.00"
    assert format_money(None, "GBP") == "" and format_money(1234.5, None) == "1,234.50"
    column = pl.DataFrame({"t": [145.2, 34.8]}).select(money_expr(pl.col("t"), "GBP")).to_series()
    assert column.to_list() == ["£145.20", "£34.80"]
