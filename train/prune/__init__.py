"""Iterative APoZ channel pruning: real channel removal (:mod:`.graph`), APoZ (:mod:`.apoz`), the loop
(:mod:`.loop`)."""
