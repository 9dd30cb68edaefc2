"""Feast definitions of the demo world, split by object type.

Each module builds its objects from the pipeline settings, so paths follow the
state root; `repo.py` instantiates them for the `feast` CLI.
"""
