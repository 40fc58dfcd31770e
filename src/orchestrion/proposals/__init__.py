"""Proposals: the day's goals, proposed with every template, ranked, chosen and recorded."""
