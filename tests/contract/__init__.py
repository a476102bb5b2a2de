"""The store contract's tests, by area; ``tests/store_contract.py`` puts them together."""
