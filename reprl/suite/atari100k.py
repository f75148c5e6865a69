"""The Atari-100k protocol (Kaiser et al. 2019, "Model-Based Reinforcement Learning for
Atari"; van Hasselt et al. 2019, "When to use parametric models in reinforcement learning?").

26 games, each trained for 100k agent steps (400k frames at frame skip 4) per seed by the
experiment (default ``der_atari100k``: Data-Efficient Rainbow), then scored by the raw game
score of its final agent: evaluation episodes without reward clipping and without episodic
life (reprl's evaluation envs never apply them), up to 108k frames each. Scores are
human-normalised with the random and human scores of ``reprl/data/atari100k_reference_scores.csv``
(the DQN Nature paper's, as used by rliable and the Atari-100k papers) and aggregated as
mean, median and IQM with stratified bootstrap confidence intervals (Agarwal et al. 2021).

The same games make the ``pretrain`` pipeline (``reprl suite pretrain``): per game one
pretraining run on that game's DQN-Replay data (Agarwal et al. 2020; default experiment
``byol_pretrain_atari``, ``dataset.game=<Game>``), judged by its final probes, then per game x
seed one RL run from its backbone (default ``ppo_finetune_atari``), scored as above. Both
stages use ``<Game>NoFrameskip-v4``, the id the pretraining presets describe the data with
(4x84x84 frames, the minimal action set).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources

from reprl.errors import ConfigError
from reprl.suite.aggregate import Reference
from reprl.suite.protocol import SUITES, Pipeline, Protocol


@cache
def reference_scores() -> dict[str, Reference]:
    """Random and average-human score of each of the 26 games, from the packaged table."""
    text = (resources.files("reprl.data") / "atari100k_reference_scores.csv").read_text()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return {
        row["game"]: Reference(float(row["random"]), float(row["human"]))
        for row in csv.DictReader(lines)
    }


def env_id(game: str) -> str:
    """The ALE id of ``game`` (``Pong`` -> ``ALE/Pong-v5``; reprl builds it with the config's
    sticky-action probability, 0 in the Atari-100k experiments)."""
    return f"ALE/{game}-v5"


def replay_env_id(game: str) -> str:
    """The id of ``game`` in the pretraining presets and the finetuning runs from them
    (``Pong`` -> ``PongNoFrameskip-v4``)."""
    return f"{game}NoFrameskip-v4"


def check_games(games: Sequence[str], make_id: Callable[[str], str] = env_id) -> None:
    """Every game's ROM is available to ale-py (checked once, before any run starts)."""
    from reprl.envs.atari import game_name

    missing = [g for g in games if game_name(make_id(g)) is None]
    if missing:
        raise ConfigError(
            f"ALE ids not available here: {', '.join(make_id(g) for g in missing)} "
            "(ale-py >= 0.9 ships the ROMs: pip install ale-py)"
        )


ATARI100K = Protocol(
    name="atari100k",
    title="Atari-100k",
    experiment="der_atari100k",
    tasks=tuple(reference_scores()),
    references=reference_scores(),
    task_overrides=lambda game: [f"env.id={env_id(game)}"],
    check_tasks=check_games,
    reserved=("env.id",),
    task_label="game",
)
SUITES.add(ATARI100K.name, ATARI100K)


PRETRAIN = Pipeline(
    name="pretrain",
    title="Pretrain -> finetune (Atari-100k games)",
    pretrain=Protocol(
        name="pretrain",
        title="pretraining",
        experiment="byol_pretrain_atari",
        tasks=ATARI100K.tasks,
        references=ATARI100K.references,
        task_overrides=lambda game: [f"env.id={replay_env_id(game)}", f"dataset.game={game}"],
        check_tasks=lambda games: check_games(games, replay_env_id),
        reserved=("env.id", "dataset.game"),
        task_label="game",
    ),
    finetune=Protocol(
        name="finetune",
        title="finetuning",
        experiment="ppo_finetune_atari",
        tasks=ATARI100K.tasks,
        references=ATARI100K.references,
        task_overrides=lambda game: [f"env.id={replay_env_id(game)}"],
        check_tasks=lambda games: check_games(games, replay_env_id),
        reserved=("env.id", "model.backbone.init_from"),
        task_label="game",
    ),
)
SUITES.add(PRETRAIN.name, PRETRAIN)
