"""Loihi 2: the numbers s4dc assumes about the chip (numerics now; the
resource model for partitioning and placement lands beside it)."""
