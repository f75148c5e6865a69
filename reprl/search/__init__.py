"""Planning with a model: batched MCTS (:mod:`reprl.search.mcts`) over search models
(:mod:`reprl.search.models`: reprl's games, or any env that saves and restores its state)."""

from reprl.search.mcts import MCTS, MCTSConfig, SearchResult, masked_softmax, visit_policy

__all__ = ["MCTS", "MCTSConfig", "SearchResult", "masked_softmax", "visit_policy"]
