"""Planning with a model: batched MCTS (:mod:`reprl.search.mcts`)."""

from reprl.search.mcts import MCTS, MCTSConfig, SearchResult, masked_softmax, visit_policy

__all__ = ["MCTS", "MCTSConfig", "SearchResult", "masked_softmax", "visit_policy"]
