"""The search space: primitive table, rule grammar, Program encoding, known rules, torch backend."""
