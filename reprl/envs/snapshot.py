"""Capture and restore a gymnasium env's full state as plain data (no pickled objects).

Used for exact resume of the sync and async backends. Every layer of the wrapper chain (each
wrapper, then the unwrapped env) contributes the attributes of its ``__dict__`` that are plain
data: numbers, strings, bools, None, numpy arrays (non-object dtype) and lists/tuples of
those. That covers classic-control states (``state``, ``steps_beyond_terminated``, ``last_u``),
Taxi's ``s``/``lastaction``, TimeLimit's ``_elapsed_steps``, OrderEnforcing's ``_has_reset``
and the frames of AtariPreprocessing and FrameStackObservation.
``numpy.random.Generator`` attributes (the env's ``_np_random``) are stored as their
bit-generator state, a dict of ints. Objects (spaces, Box2D worlds, emulators, renderers) are
skipped, which is why a family must opt in with ``EnvFamily.exact_resume`` (and can add what
the generic walk misses by overriding ``EnvFamily.capture``/``restore``, as Atari does for the
emulator).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from reprl.errors import EnvError

_NUMERIC = frozenset("biuf")  # bool, int, uint, float: what checkpoints store as tensors
_SKIP = frozenset({"env", "spec", "_cached_spec", "metadata", "render_mode"})
_RNG = "__rng__"


def _layers(env: gym.Env) -> list[gym.Env]:
    """The wrapper chain from the outermost wrapper to the unwrapped env."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _encode(value: Any) -> tuple[bool, Any]:
    """``(ok, plain)``: the plain-data form of ``value``, or ``ok=False`` to skip it."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    # Non-numeric arrays (Taxi's constant map of bytes) cannot become checkpoint tensors.
    if isinstance(value, np.generic):
        return (True, value.item()) if value.dtype.kind in _NUMERIC else (False, None)
    if isinstance(value, np.ndarray):
        return (True, value.copy()) if value.dtype.kind in _NUMERIC else (False, None)
    if isinstance(value, np.random.Generator):
        return True, {_RNG: value.bit_generator.state}
    if isinstance(value, (list, tuple, deque)):  # deque: FrameStackObservation's frames
        items = [_encode(v) for v in value]
        if all(ok for ok, _ in items):
            return True, [v for _, v in items]
    return False, None


def _decode(plain: Any, current: Any) -> Any:
    """The value to set, matching the type of the attribute it replaces where that matters."""
    if isinstance(plain, dict) and _RNG in plain:
        rng = current if isinstance(current, np.random.Generator) else np.random.default_rng()
        rng.bit_generator.state = plain[_RNG]
        return rng
    if isinstance(plain, np.ndarray):
        # the checkpoint may have widened the dtype (uint32 -> int64): restore the env's own
        return np.array(plain, dtype=current.dtype if isinstance(current, np.ndarray) else None)
    if isinstance(current, np.generic) and plain is not None:
        return type(current)(plain)  # e.g. Taxi's ``s`` is an np.int64 used as a dict key
    if isinstance(current, tuple) and isinstance(plain, list):
        return tuple(plain)
    if isinstance(current, deque) and isinstance(plain, list):
        return deque(plain, maxlen=current.maxlen)
    return plain


def numpy_tree(obj: Any) -> Any:
    """Torch tensors -> numpy arrays, recursively: checkpoints store numpy arrays as tensors
    so that they load with ``torch.load(weights_only=True)``."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {k: numpy_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(numpy_tree(v) for v in obj)
    return obj


def capture_env(env: gym.Env) -> dict[str, Any]:
    """The env's state: per layer, its class name and plain attributes."""
    layers = []
    for layer in _layers(env):
        attrs = {}
        for key, value in vars(layer).items():
            if key in _SKIP:
                continue
            ok, plain = _encode(value)
            if ok:
                attrs[key] = plain
        layers.append({"class": type(layer).__name__, "attrs": attrs})
    return {"layers": layers}


def restore_env(env: gym.Env, state: dict[str, Any]) -> None:
    """Restore what :func:`capture_env` returned into an env built with the same wrappers."""
    layers = _layers(env)
    saved = state["layers"]
    names = [type(layer).__name__ for layer in layers]
    if names != [s["class"] for s in saved]:
        raise EnvError(
            f"cannot restore env state: wrappers {[s['class'] for s in saved]} != {names}"
        )
    for layer, layer_state in zip(layers, saved, strict=True):
        attrs = vars(layer)  # written directly: these were instance attributes when captured
        for key, plain in layer_state["attrs"].items():
            attrs[key] = _decode(plain, attrs.get(key))
