"""AlphaZero (Silver et al. 2018, Science; Silver et al. 2017, "Mastering the game of Go
without human knowledge") on the one loop.

- **Source** (:class:`SelfPlaySource`): ``num_games`` games played in lock-step by batched MCTS
  (:mod:`reprl.search.mcts`) with the current network and the true environment as the model
  (:func:`reprl.search.models.make_search_model`: reprl's games save and restore their own
  state; Atari, classic control, MuJoCo, DeepSea... through their exact-resume snapshots,
  ALE's ``cloneState`` for Atari). Moves are sampled from the visit counts at temperature 1
  for the first ``temperature_moves`` plies of a game, then played greedily (temperature 0).
  Every position stores ``(obs, legal mask, pi = normalised visit counts, z)``, z being the
  game's outcome from the view of the player to move there (single-player games: the return
  from that position on, discounted by ``discount``). One iteration plays every game to its
  end; positions go to a replay buffer of the last ``buffer_size`` positions.
- **Loss**: cross-entropy of the network's policy to ``pi`` plus ``value_coef`` times the squared
  error of its value to ``z``; the paper's L2 term is Adam's ``weight_decay`` (L2 added to the
  gradient, as ``c ||theta||^2`` in the paper's loss).
- **Network**: any backbone (mlp, conv) -> neck -> ``actor_critic`` policy (the categorical
  head's log-softmax is the policy, the value head the value).
- **Arena** (:class:`ArenaCallback`, a loop callback the agent adds through
  :meth:`AlphaZero.callbacks`): every ``arena_every`` iterations the current agent (MCTS with
  the network, greedy, no noise) plays ``arena_games`` games against a uniformly random player
  (and, with ``arena_previous``, against the network of the previous arena), half of them
  moving first; win/draw/loss rates, overall and per side, are logged as ``arena/*`` in that
  iteration's metrics (Catch: ``arena/mean_return``).
- **Acting** outside the search (``reprl eval``, the periodic evaluation against
  ``env.kwargs.opponent: random``) uses the network's policy alone, without search.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reprl.agents.base import Agent
from reprl.data.rollout import obs_torch_dtype
from reprl.envs.config import EnvConfig
from reprl.errors import ConfigError
from reprl.loop import Callback, RunState
from reprl.optim.optimizers import Adam, check_max_grad_norm
from reprl.optim.schedules import Schedule
from reprl.registry import AGENTS
from reprl.runs.checkpoint import to_numpy
from reprl.search.mcts import MCTS, Evaluator, MCTSConfig, visit_policy
from reprl.search.models import make_search_model
from reprl.types import Batch


@dataclass
class AlphaZeroConfig:
    """AlphaZero hyperparameters (defaults: small board games on a CPU)."""

    num_games: int = 32
    """Self-play games per iteration, searched together (the MCTS batch)."""
    num_simulations: int = 50
    """MCTS simulations per move (AlphaZero: 800)."""
    c_puct: float = 1.25
    """PUCT exploration constant."""
    dirichlet_alpha: float = 0.3
    """Root Dirichlet noise concentration (~10 / typical number of legal moves)."""
    dirichlet_frac: float = 0.25
    """Weight of the root noise."""
    temperature_moves: int = 4
    """Plies per game sampled at temperature 1 (visit counts); greedy afterwards."""
    buffer_size: int = 20_000
    """Replay buffer capacity in positions."""
    batch_size: int = 128
    """Positions per minibatch."""
    updates_per_iteration: int = 32
    """Gradient steps after each iteration's self-play."""
    learning_starts: int = 256
    """Positions in the buffer before updates begin."""
    lr: Schedule = field(default_factory=lambda: Schedule("constant", 1e-3))
    """Learning rate (a number or a schedule)."""
    adam_eps: float = 1e-8
    """Adam epsilon."""
    weight_decay: float = 1e-4
    """L2 coefficient (AlphaZero's c = 1e-4), as Adam's weight_decay."""
    value_coef: float = 1.0
    """Weight of the value loss."""
    max_grad_norm: float | None = None
    """Global gradient-norm clipping (None: off)."""
    arena_every: int = 10
    """Play the arena every this many iterations (0: never)."""
    arena_games: int = 50
    """Arena games per opponent (half moving first)."""
    arena_previous: bool = False
    """Also play against the network of the previous arena."""
    arena_simulations: int = 0
    """MCTS simulations per arena move (0: num_simulations)."""
    discount: float = 1.0
    """Discount of the search's backups and of the value targets (1 for board games; long
    single-player episodes such as Atari: MuZero's 0.997)."""
    normalize_q: bool = False
    """Min-max normalised Q in the search (MuZero): for rewards of any scale (Atari)."""

    def validate(self, path: str) -> None:
        """Reject impossible values at load time."""
        check_max_grad_norm(self.max_grad_norm, path)
        for name in ("num_games", "num_simulations", "buffer_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{path}.{name}: must be >= 1, got {getattr(self, name)}")
        self.search().validate(path)

    def search(self, arena: bool = False) -> MCTSConfig:
        """The MCTS options (of the arena's games with ``arena``)."""
        sims = self.arena_simulations if arena and self.arena_simulations else self.num_simulations
        return MCTSConfig(
            sims,
            self.c_puct,
            self.dirichlet_alpha,
            self.dirichlet_frac,
            self.discount,
            self.normalize_q,
        )


def outcomes(rewards: list[float], num_players: int, discount: float = 1.0) -> np.ndarray:
    """z_t for each position of a finished game: ``sum_k>=t (sign discount)^(k-t) r_k``, where
    ``r_k`` is the reward of the player who moved at ply k and sign = -1 for two alternating
    players (the outcome from the view of the player to move at t), +1 for single-player
    games (the discounted return from t on)."""
    factor = (-1.0 if num_players == 2 else 1.0) * discount
    z, ret = np.zeros(len(rewards)), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        ret = rewards[t] + factor * ret
        z[t] = ret
    return z


def play_arena(
    env: str | EnvConfig,
    agent_eval: Evaluator,
    cfg: MCTSConfig,
    num_games: int,
    seed: int,
    opponent_eval: Evaluator | None = None,
) -> dict[str, float]:
    """The agent (greedy MCTS with ``agent_eval``) against a random player (or greedy MCTS with
    ``opponent_eval``), moving first in the even-numbered games. Two-player games return
    ``win_rate, draw_rate, loss_rate`` and the win and loss rates moving first
    (``first_*``) and second (``second_*``); single-player games ``mean_return``."""
    model = make_search_model(env)
    games = [make_search_model(env) for _ in range(num_games)]
    rng = np.random.default_rng(seed)
    two_player = model.num_players == 2
    side = [i % 2 if two_player else 0 for i in range(num_games)]
    agent_mcts = MCTS(model, agent_eval, cfg)
    opp_mcts = None if opponent_eval is None else MCTS(model, opponent_eval, cfg)
    result = np.zeros(num_games)
    active = np.ones(num_games, bool)
    for i, game in enumerate(games):
        game.reset(seed=seed + i)
    while active.any():
        ours = [i for i in np.flatnonzero(active) if games[i].current_player == side[i]]
        theirs = [i for i in np.flatnonzero(active) if games[i].current_player != side[i]]
        actions: dict[int, int] = {}
        for idx, mcts in ((ours, agent_mcts), (theirs, opp_mcts)):
            if not idx:
                continue
            if mcts is None:  # the random player
                for i in idx:
                    actions[i] = int(rng.choice(np.flatnonzero(games[i].action_mask())))
                continue
            res = mcts.search([games[i].get_state() for i in idx], add_noise=False)
            actions |= dict(zip(idx, res.visit_counts.argmax(axis=1).tolist(), strict=True))
        for i, action in actions.items():
            mover = games[i].current_player
            _, reward, term, trunc, _ = games[i].step(action)
            result[i] += float(reward) if mover == side[i] else -float(reward)
            active[i] = not (term or trunc)
    if not two_player:
        return {"mean_return": float(result.mean())}
    rates = {
        "win_rate": float((result > 0).mean()),
        "draw_rate": float((result == 0).mean()),
        "loss_rate": float((result < 0).mean()),
    }
    for name, games_of_side in (("first", np.equal(side, 0)), ("second", np.equal(side, 1))):
        if games_of_side.any():
            rates[f"{name}_win_rate"] = float((result[games_of_side] > 0).mean())
            rates[f"{name}_loss_rate"] = float((result[games_of_side] < 0).mean())
    return rates


def env_config(envs: Any) -> EnvConfig:
    """The config a vector env was made from (``make_vector_env`` records it), else the bare
    id of its spec."""
    cfg = getattr(envs, "config", None)
    return cfg if cfg is not None else EnvConfig(id=envs.spec.env_id)


class ArenaCallback(Callback):
    """Every ``arena_every`` iterations: greedy MCTS with the current network against a random
    player (and the previous arena's network with ``arena_previous``); the ``arena/*`` rates
    join that iteration's metrics (callbacks after this one log them)."""

    def __init__(self, agent: AlphaZero, env: EnvConfig, seed: int) -> None:
        self.agent, self.env, self.seed = agent, env, seed
        self.previous: Evaluator | None = None  # the network of the previous arena

    def on_iteration(self, state: RunState, metrics: dict[str, float]) -> None:
        cfg = self.agent.cfg
        if cfg.arena_every <= 0 or state.iteration % cfg.arena_every != 0:
            return
        agent, seed = self.agent, self.seed + 7_919 * state.iteration
        search = cfg.search(arena=True)
        out = play_arena(self.env, agent.evaluator(), search, cfg.arena_games, seed)
        metrics |= {f"arena/{k}": v for k, v in out.items()}
        if cfg.arena_previous and "win_rate" in out:
            if self.previous is not None:
                prev = play_arena(
                    self.env, agent.evaluator(), search, cfg.arena_games, seed, self.previous
                )
                metrics |= {f"arena/previous_{k}": v for k, v in prev.items()}
            self.previous = agent.evaluator(copy.deepcopy(agent.model))


class SelfPlaySource:
    """Plays ``num_games`` games of ``env_id`` by batched MCTS per :meth:`next` (every game to
    its end) and keeps a replay buffer of the positions; see the module docstring."""

    def __init__(self, agent: AlphaZero, env: EnvConfig, seed: int, device: torch.device) -> None:
        cfg, spec = agent.cfg, agent.spec
        self.cfg, self.env, self.device, self.seed = cfg, env, device, seed
        self.model = make_search_model(env)
        self.games = [make_search_model(env) for _ in range(cfg.num_games)]
        for i, game in enumerate(self.games):
            game.reset(seed=seed + i)  # seeds each game's np_random once (Catch's ball)
        self.rngs = [np.random.default_rng([seed, i]) for i in range(cfg.num_games)]
        a, cap = spec.num_actions, cfg.buffer_size
        self.buffer = {
            # Atari frames stay uint8 (4 x 84 x 84: 28 KB per position)
            "obs": torch.zeros((cap, *spec.obs_shape), dtype=obs_torch_dtype(spec.obs_dtype)),
            "action_mask": torch.zeros((cap, a), dtype=torch.bool),
            "policy_target": torch.zeros((cap, a)),
            "value_target": torch.zeros(cap),
        }
        self.pos = self.size = 0
        self.iteration = 0
        self.generator = torch.Generator().manual_seed(seed)
        self.metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ collect
    def next(self, agent: AlphaZero) -> Batch:
        """Play every game to its end; the Batch holds their positions ``(P, 1, ...)``."""
        cfg, games = self.cfg, self.games
        mcts = MCTS(self.model, agent.evaluator(), cfg.search())
        t0 = time.perf_counter()
        if self.iteration > 0:  # the games were reset (and seeded) when made
            for game in games:
                game.reset()
        trajectories: list[list[tuple[Any, ...]]] = [[] for _ in games]
        rewards: list[list[float]] = [[] for _ in games]
        active = list(range(len(games)))
        while active:
            res = mcts.search(
                [games[i].get_state() for i in active], [self.rngs[i] for i in active]
            )
            pi_target = visit_policy(res.visit_counts, 1.0)
            for row, i in enumerate(active):
                ply = len(trajectories[i])
                temperature = 1.0 if ply < cfg.temperature_moves else 0.0
                pi = visit_policy(res.visit_counts[row : row + 1], temperature)[0]
                action = int(self.rngs[i].choice(len(pi), p=pi))
                game = games[i]
                trajectories[i].append(
                    (game.observation(), game.action_mask(), pi_target[row], action)
                )
                _, reward, term, trunc, _ = game.step(action)
                rewards[i].append(float(reward))
                if term or trunc:
                    active = [j for j in active if j != i]
        self.iteration += 1
        batch = self._batch(trajectories, rewards)
        self._store(batch)
        returns = [sum(r) for r in rewards]
        self.metrics = {
            "perf/selfplay_time": time.perf_counter() - t0,
            "charts/episodic_length": float(np.mean([len(r) for r in rewards])),
            "charts/episodes": float(len(rewards)),
            "stats/buffer_size": float(self.size),
        }
        if self.model.num_players == 1:
            self.metrics["charts/episodic_return"] = float(np.mean(returns))
        else:  # the first player's outcome: +1 win, 0 draw, -1 loss
            first = [r[0] if len(r) % 2 == 1 else -r[-1] for r in rewards]
            self.metrics["charts/first_player_outcome"] = float(np.mean(first))
        return batch

    def _batch(
        self, trajectories: list[list[tuple[Any, ...]]], rewards: list[list[float]]
    ) -> Batch:
        obs, masks, pis, actions, z, first, last, reward = [], [], [], [], [], [], [], []
        for traj, rew in zip(trajectories, rewards, strict=True):
            z.append(outcomes(rew, self.model.num_players, self.cfg.discount))
            reward.append(rew)
            for t, (o, m, p, a) in enumerate(traj):
                obs.append(o)
                masks.append(m)
                pis.append(p)
                actions.append(a)
                first.append(t == 0)
                last.append(t == len(traj) - 1)
        col = lambda x, dtype: torch.as_tensor(np.asarray(x), dtype=dtype).unsqueeze(1)  # noqa: E731
        terminated = col(last, torch.bool)
        return Batch(
            obs=col(np.stack(obs), self.buffer["obs"].dtype),
            action=col(actions, torch.long),
            reward=col(np.concatenate(reward), torch.float32),
            terminated=terminated,
            truncated=torch.zeros_like(terminated),
            is_first=col(first, torch.bool),
            valid=torch.ones_like(terminated),
            extras={
                "action_mask": col(np.stack(masks), torch.bool),
                "policy_target": col(np.stack(pis), torch.float32),
                "value_target": col(np.concatenate(z), torch.float32),
            },
        )

    def _store(self, batch: Batch) -> None:
        """Add the positions to the ring buffer (the oldest are overwritten)."""
        new = {"obs": batch.obs[:, 0]} | {k: v[:, 0] for k, v in batch.extras.items()}
        cap = self.cfg.buffer_size
        for start in range(0, len(new["obs"]), cap):
            chunk = {k: v[start : start + cap] for k, v in new.items()}
            n = len(chunk["obs"])
            idx = (self.pos + torch.arange(n)) % cap
            for k, v in chunk.items():
                self.buffer[k][idx] = v
            self.pos, self.size = (self.pos + n) % cap, min(self.size + n, cap)

    def minibatches(self, num: int, batch_size: int) -> Iterator[Batch]:
        """``num`` minibatches of positions drawn uniformly from the buffer (none until it
        holds ``learning_starts``)."""
        if self.size < self.cfg.learning_starts:
            return
        for _ in range(num):
            idx = torch.randint(self.size, (batch_size,), generator=self.generator)
            get = {k: v[idx].unsqueeze(1).to(self.device) for k, v in self.buffer.items()}
            zeros = torch.zeros((batch_size, 1), dtype=torch.bool, device=self.device)
            yield Batch(
                obs=get.pop("obs"),
                action=torch.zeros((batch_size, 1), dtype=torch.long, device=self.device),
                reward=torch.zeros((batch_size, 1), device=self.device),
                terminated=zeros,
                truncated=zeros,
                is_first=zeros,
                valid=~zeros,
                extras=get,
            )

    # ------------------------------------------------------------------ bookkeeping
    def pop_metrics(self) -> dict[str, float]:
        """Self-play statistics of the last iteration."""
        metrics, self.metrics = self.metrics, {}
        return metrics

    def state_dict(self) -> dict[str, Any]:
        """Replay buffer, counters and random streams (games restart every iteration)."""
        return {
            "buffer": {k: v[: self.size].clone() for k, v in self.buffer.items()},
            "pos": self.pos,
            "iteration": self.iteration,
            "generator": self.generator.get_state(),
            "rngs": [r.bit_generator.state for r in self.rngs],
            "game_rngs": [g.np_random.bit_generator.state for g in self.games],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        for k, v in state["buffer"].items():
            self.buffer[k][: len(v)] = torch.as_tensor(to_numpy(v))
        self.size = len(state["buffer"]["obs"])
        self.pos, self.iteration = int(state["pos"]), int(state["iteration"])
        self.generator.set_state(torch.as_tensor(state["generator"]))
        for r, s in zip(self.rngs, state["rngs"], strict=True):
            r.bit_generator.state = s
        for g, s in zip(self.games, state["game_rngs"], strict=True):
            g.np_random.bit_generator.state = s


@AGENTS.register("alphazero", AlphaZeroConfig)
class AlphaZero(Agent):
    """Self-play MCTS -> replay -> policy cross-entropy + value MSE (see the module docstring)."""

    requires = ("policy_target", "value_target")

    def make_optimizer(self) -> Any:
        """Adam with the L2 term as weight decay."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        cfg = self.cfg
        return Adam(params, lr=cfg.lr(0.0), eps=cfg.adam_eps, weight_decay=cfg.weight_decay)

    def make_source(self, envs: Any, seed: int, device: torch.device) -> SelfPlaySource:
        """Self-play on search models of the vector env's config (the vector env itself
        serves evaluation only)."""
        return SelfPlaySource(self, env_config(envs), seed, device)

    def callbacks(self, envs: Any, seed: int) -> list[Callback]:
        """The arena (:class:`ArenaCallback`), when ``arena_every > 0``."""
        if self.cfg.arena_every <= 0:
            return []
        return [ArenaCallback(self, env_config(envs), seed)]

    def evaluator(self, model: Any = None) -> Evaluator:
        """The network (or ``model``) as MCTS's evaluator: logits and value of K positions."""
        net = self.model if model is None else model
        device, dtype = self.device, obs_torch_dtype(self.spec.obs_dtype)

        @torch.inference_mode()
        def evaluate(obs: np.ndarray, legal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = torch.from_numpy(np.ascontiguousarray(obs)).to(device, dtype).unsqueeze(1)
            (out, _), _ = net(x)
            return out.dist.logits[:, 0].float().cpu().numpy(), out.value[:, 0, 0].cpu().numpy()

        return evaluate

    def minibatches(self, source: Any, batch: Batch) -> Iterator[Batch]:
        """``updates_per_iteration`` minibatches sampled from the replay buffer."""
        return source.minibatches(self.cfg.updates_per_iteration, self.cfg.batch_size)

    def compute_loss(self, mb: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``-pi . log p`` + value_coef ``(v - z)^2``, means over the minibatch."""
        with self.autocast():
            (out, _), _ = self.model(mb.obs)
        log_p = out.dist.logits.float()
        pi = mb.extras["policy_target"]
        value = out.value[..., 0].float()
        policy_loss = -(pi * log_p).sum(-1).mean()
        value_loss = F.mse_loss(value, mb.extras["value_target"])
        with torch.no_grad():
            # Cross-entropy minus the targets' entropy: how far the net is from the search.
            target_entropy = -(pi * pi.clamp(min=1e-12).log()).sum(-1).mean()
            info = {"stats/policy_kl": policy_loss.detach() - target_entropy}
        return {
            "loss_rl_policy": policy_loss,
            "loss_rl_value": self.cfg.value_coef * value_loss,
        }, info
