"""Replay corpus: recorded gateway exchanges that must stay byte-identical.

``tests/replay/corpus/*.json`` holds one recorded case per file: the config, the upstream's
scripted answers, the raw client request, what every fake upstream received and the exact bytes
the client got back. ``tests/replay/test_replay_corpus.py`` replays each case on every backend and
compares bytes; ``python -m tests.replay.record`` (re)writes the corpus. See ``replay.py`` for
the normalizations and how to re-record.
"""
