"""Parsers of the values sources write in many ways: phones, emails, names, VND amounts, timestamps.

Each works on whole columns, once per distinct value, and says why a value cannot be used.
"""
