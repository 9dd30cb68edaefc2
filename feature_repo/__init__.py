"""Feast definitions derived from the selected project, split by object type.

Each module builds its objects from the pipeline settings (the project declares the
entity, the source's columns and the model's features; paths follow the state root);
`repo.py` instantiates them for the `feast` CLI.
"""
