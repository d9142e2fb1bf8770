"""Lava backend: a compiled network as Lava processes (needs lava-nc, in .venv-lava)."""
